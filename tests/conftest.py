import sys
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests' own helpers (study_helpers)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Small tensors: extra torch / BLAS threads only contend (and spin) on a shared 2-core CPU, which
    made these tests up to 25x slower. Ray trials in the end-to-end tests set their own threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)
