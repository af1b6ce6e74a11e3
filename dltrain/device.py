"""Device selection and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from dltrain.errors import ConfigError


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """auto picks cuda, then mps, then cpu; asking for an absent accelerator is a ConfigError.

    Each rank of a distributed run on CUDA takes the GPU of its local rank.
    """
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(
            f"trainer.device: '{name}' is not available on this machine; use trainer.device=auto "
            "or trainer.device=cpu"
        )
    if name == "cuda":
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting for reproducible matmuls on CUDA.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Set both ways: jobs of a sweep share this process.
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = False
