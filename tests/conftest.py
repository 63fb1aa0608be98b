"""Shared fixtures: tests never touch the network, and run on 2 CPU threads."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# optimize_for_cpu's kernel choices, timed on a loaded machine, go to this run's own file (not the user's cache,
# where they would steer the user's later runs); subprocesses inherit it
if "HF_VISION_KERNEL_CHOICES" not in os.environ:
    _kernels = tempfile.mkdtemp(prefix="hf-vision-kernels-")
    atexit.register(shutil.rmtree, _kernels, ignore_errors=True)
    os.environ["HF_VISION_KERNEL_CHOICES"] = os.path.join(_kernels, "choices.json")

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
