"""Test-wide settings: one intra-op thread keeps small-tensor tests fast and stable on a busy 2-core machine."""
import torch

torch.set_num_threads(1)
