"""`pip install bindings/python` builds a wheel holding the package, with no dependency."""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import PYTHON_DIR


def test_pip_builds_a_wheel_of_the_package_without_dependencies(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    src = tmp_path / "src"
    shutil.copytree(PYTHON_DIR, src, ignore=shutil.ignore_patterns(
        "tests", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    dist = tmp_path / "dist"
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    wheel = next(pathlib.Path(dist).glob("ferry-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("__init__", "_lib", "errors", "runtime", "dlpack", "units", "torch"):
        assert f"ferry/{module}.py" in names
    metadata = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Dist" not in text.split("Provides-Extra")[0]


def test_a_library_copied_next_to_the_package_ships_in_the_wheel_and_is_found(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    import ferry

    src = tmp_path / "src"
    shutil.copytree(PYTHON_DIR, src, ignore=shutil.ignore_patterns(
        "tests", "examples", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    shutil.copy(ferry.library_path(), src / "ferry" / "libferry.so")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("FERRY_LIBRARY", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(site)
    code = "import ferry; print(ferry.version()); print(ferry.library_path())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    version, path = out.stdout.split()
    assert version == ferry.version()
    assert path == str(site / "ferry" / "libferry.so")
