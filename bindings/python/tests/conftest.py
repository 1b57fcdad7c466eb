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
