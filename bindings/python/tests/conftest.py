"""Shared setup: import ferry from this checkout and find libferry.

The library is taken from FERRY_LIBRARY when set, else from the repository's build tree
(<repo>/build/libferry.so). FERRY_TEST_BACKEND picks the backend (default: sim).
"""

import os
import pathlib
import sys

import pytest

PYTHON_DIR = pathlib.Path(__file__).resolve().parent.parent  # bindings/python
REPO = PYTHON_DIR.parent.parent
HEADER = REPO / "include" / "ferry" / "ferry.h"

sys.path.insert(0, str(PYTHON_DIR))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

if not os.environ.get("FERRY_LIBRARY"):
    built = REPO / "build" / "libferry.so"
    if built.exists():
        os.environ["FERRY_LIBRARY"] = str(built)  # subprocesses find it too

BACKEND = os.environ.get("FERRY_TEST_BACKEND", "sim")


def _cuda_missing():
    """Why FERRY_TEST_BACKEND=cuda cannot run here (no GPU, a library built without cuda),
    or None when a cuda runtime can be created."""
    import ferry

    try:
        ferry.Runtime("1MiB", backend="cuda").close()
    except ferry.LibraryNotFoundError:
        return None  # reported by _library_loaded
    except ferry.BackendUnavailableError as exc:
        return f"FERRY_TEST_BACKEND=cuda, but no usable cuda backend: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    # A cuda run on a machine without a GPU must say it did not run, not fail or pass.
    if BACKEND != "cuda":
        return
    reason = _cuda_missing()
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def backend():
    return BACKEND


@pytest.fixture(scope="session", autouse=True)
def _library_loaded():
    import ferry

    try:
        ferry.version()
    except ferry.LibraryNotFoundError as exc:
        pytest.exit(f"libferry not found: build it or set FERRY_LIBRARY\n{exc}", returncode=2)
