"""The README's examples run as written (the ones that take seconds)."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def _block(heading: str) -> str:
    text = open(README, encoding="utf-8").read()
    part = text.split(heading, 1)[1]
    m = re.search(r"```python\n(.*?)```", part, re.S)
    assert m, f"no python block under {heading!r}"
    return m.group(1)


@pytest.mark.parametrize("heading", ["## API tour", "### Sampling, likelihood, guidance"])
def test_readme_block_runs_as_written(heading):
    code = _block(heading)
    assert code.lstrip().startswith("import"), "a README example starts with its imports"
    scope: dict = {}
    exec(compile(code, f"README {heading}", "exec"), scope)  # noqa: S102 - the README is ours
    if heading.startswith("### Sampling"):
        # what the comments in the block promise
        assert scope["info"]["nfe"] == 15
        assert scope["x"].shape == (8, 2) and scope["logp"].shape == (8,)
        known, mask, filled = scope["known"], scope["mask"], scope["filled"]
        assert (filled[:, 0] == known[:, 0]).all()  # inpainting keeps the known coordinate


def test_setup_shows_two_commands():
    text = open(README, encoding="utf-8").read()
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", setup, re.S)
    commands = [ln for b in blocks for ln in b.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(commands) == 2
    assert commands[0].rstrip().split("#")[0].strip().endswith("stochgen demo")
    assert "python -m pytest -q tests" in commands[1]
    ci = open(os.path.join(os.path.dirname(README), ".ci", "run"), encoding="utf-8").read()
    assert "python -m pytest -q tests" in ci  # CI runs the README's test command
