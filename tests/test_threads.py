"""Process-wide thread settings made by ``import voicedesk`` (voicedesk/__init__.py)."""

import os
import subprocess
import sys

import pytest

BLAS_THREADS = ("import threadpoolctl;"
                "print([p['num_threads'] for p in threadpoolctl.threadpool_info()"
                " if p['internal_api'] == 'openblas'])")


def _blas_threads(first: str, environ: dict[str, str]) -> str:
    """numpy's OpenBLAS thread count in a fresh interpreter that imports ``first``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")} | environ
    out = subprocess.run([sys.executable, "-c", f"{first}; {BLAS_THREADS}"], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("first", ["import voicedesk, numpy", "import numpy, voicedesk"])
def test_numpy_gets_one_thread_whichever_loads_first(first: str) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: OpenBLAS has one thread anyway")
    assert _blas_threads(first, {}) == "[1]"


def test_an_explicit_openblas_setting_wins() -> None:
    assert _blas_threads("import numpy, voicedesk", {"OPENBLAS_NUM_THREADS": "2"}) == "[2]"
