"""Fixtures and hooks; the helpers tests import are in helpers.py."""
import os
import shutil
import tempfile

import pytest
import torch

from apot.projection import compilation
from helpers import DATA, HAVE_DATA, make_image_folder, write_tiny_cifar


def pytest_collection_modifyitems(config, items):
    """Tests marked needs_data or cuda (pyproject.toml's markers) skip, saying why, where the
    shared data or a GPU is absent."""
    absent = {"needs_data": f"needs the real CIFAR-10 and the authors' checkpoints under {DATA} "
                            "(absent; APOT_DATA names another folder)",
              "cuda": "needs a GPU (none here)"}
    if HAVE_DATA:
        del absent["needs_data"]
    if torch.cuda.is_available():
        del absent["cuda"]
    for item in items:
        for marker, reason in absent.items():
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_configure(config):
    """The session compiles into its own, empty torch.compile cache, shared by its workers.
    Inductor's on-disk cache is keyed neither by the instruction set it compiled for nor by
    ATEN_CPU_CAPABILITY: after a native AVX-512 run, an AVX2-only run (ATEN_CPU_CAPABILITY=avx2)
    sharing /tmp/torchinductor_$USER loaded the other run's kernels and evaluated the authors'
    4-bit ResNet-20 at 10% top-1, and the reverse order aborted. A cache the user names
    (TORCHINDUCTOR_CACHE_DIR) is theirs to keep."""
    if hasattr(config, "workerinput") or "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return  # a worker inherits its controller's folder through the environment
    config.inductor_cache = tempfile.mkdtemp(prefix="apot-tests-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = config.inductor_cache


def pytest_unconfigure(config):
    if hasattr(config, "inductor_cache"):
        shutil.rmtree(config.inductor_cache, ignore_errors=True)


def share_the_cores_between_workers():
    """Each pytest-xdist worker takes its share of the cores, in its own process and in those it
    starts: workers using every core each oversubscribe the CPU and run slower together."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


share_the_cores_between_workers()


@pytest.fixture(scope="session", autouse=True)
def eager_quantizers():
    """Quantizers run eager unless a test asks for compilation (`compilation(True)`): the
    tests about compiled quantizers ask, and every other test's arithmetic is the same."""
    with compilation(False):
        yield


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_imagenet(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet"))
