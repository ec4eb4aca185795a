"""Worker for tests/test_ddp.py, launched by torch.distributed.run (also usable on one process).

Usage: python -m torch.distributed.run --nproc_per_node=2 tests/_ddp_worker.py OUT_DIR STEPS BATCH [PROBLEM]
Trains the shared problem of test_ddp.problem() and writes, per rank, OUT_DIR/rank<r>.pt with the
loss history and the final weights; rank 0 also writes the checkpoint OUT_DIR/ddp.ckpt.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(1)

import stochgen  # noqa: E402
from test_ddp import problem  # noqa: E402


def main():
    out, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    domain, data, kw = problem(sys.argv[4] if len(sys.argv) > 4 else "gaussian")
    rank = int(os.environ.get("RANK", "0"))
    model = stochgen.fit(domain, data, steps=steps, batch_size=batch, ckpt_path=os.path.join(out, "ddp.ckpt"),
                         **kw)
    torch.save({"loss": model.history["loss"], "net": model.net.state_dict(), "ema": model.ema.state_dict(),
                "world": int(os.environ.get("WORLD_SIZE", "1")), "torch_seed": torch.initial_seed()},
               os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main()
