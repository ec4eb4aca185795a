"""Test-wide settings.

* One intra-op thread keeps small-tensor tests fast and stable on a busy 2-core machine.
* A module may declare ``DEFAULT_DTYPE = torch.float64``; its tests then run with that
  default dtype, and every test starts from float32 otherwise, so no module leaks its
  setting into another.
"""
import pytest
import torch

torch.set_num_threads(1)


def pytest_collection_finish(session):
    torch.set_default_dtype(torch.float32)  # modules may have changed it while being imported


@pytest.fixture(autouse=True)
def _default_dtype(request):
    torch.set_default_dtype(getattr(request.module, "DEFAULT_DTYPE", torch.float32))
    yield
    torch.set_default_dtype(torch.float32)
