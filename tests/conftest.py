import sys
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests' own helpers (study_helpers)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs an NVIDIA GPU that torch sees (skipped without one; "
                                       "benchmarks/gpu_check.sh runs them)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU: torch.cuda.is_available() is False")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Small tensors: extra torch / BLAS threads only contend (and spin) on a shared 2-core CPU, which
    made these tests up to 25x slower. Ray trials in the end-to-end tests set their own threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)
