"""`pip install ./bindings/python` builds libferry and ferry-stat and ships them inside a
platform wheel: the package works in a fresh virtual environment with nothing else set up.

One fixture copies the checkout (its tracked and untracked, not ignored files) to a
temporary directory, makes a virtual environment outside the repository and installs the
copy's bindings/python into it the way a user does: pip's isolated build, which fetches
setuptools, meson and ninja from PyPI. The environment sees the system's site-packages
(for torch); ferry is checked absent there before the install. Everything then runs
from a temporary directory, without FERRY_LIBRARY, LD_LIBRARY_PATH or PYTHONPATH.

About 30 to 70 s on the 2-core VM, the build included. tools/test runs it in its first
python lane only; FERRY_TEST_PACKAGING=0 skips it (the build-venv lane sets it).
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import textwrap
import urllib.parse

import pytest

from conftest import REPO

if os.environ.get("FERRY_TEST_PACKAGING") == "0":
    pytest.skip("FERRY_TEST_PACKAGING=0: the packaging tests run in tools/test's python lane",
                allow_module_level=True)

_IGNORED = shutil.ignore_patterns(".git", "build", "build-*", "target", "gpu-deps",
                                  "__pycache__", "*.egg-info", ".pytest_cache")


def _index_unreachable():
    """Why pip cannot reach its package index, or None when it can."""
    url = urllib.parse.urlsplit(os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple"))
    if os.environ.get("PIP_NO_INDEX"):
        return "PIP_NO_INDEX is set"
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=5).close()
    except OSError as exc:
        return f"cannot reach {url.hostname}: {exc}"
    return None


def _copy_checkout(dest):
    """The files a user's checkout holds: git's tracked and untracked, not ignored ones
    (or, without git, the tree minus build outputs)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(REPO, dest, ignore=_IGNORED)
        return
    for name in filter(None, listed.stdout.decode().split("\0")):
        src = REPO / name
        if src.is_file():  # a deleted, not yet committed file is still listed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _clean_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("FERRY_LIBRARY", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


class Installed:
    def __init__(self, venv, cwd):
        self.venv = venv
        self.python = venv / "bin" / "python"
        self.cwd = cwd

    def run(self, args, env=None, timeout=120):
        return subprocess.run(args, cwd=self.cwd, env=env or _clean_env(),
                              capture_output=True, text=True, timeout=timeout)

    def python_json(self, code, env=None):
        out = self.run([str(self.python), "-c", textwrap.dedent(code)], env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def package_dir(self):
        return pathlib.Path(self.python_json(
            "import json, ferry, os; print(json.dumps(os.path.dirname(ferry.__file__)))"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    why = _index_unreachable()
    if why:
        pytest.skip(f"pip's isolated build needs setuptools, meson and ninja from PyPI: {why}")
    try:
        import ensurepip  # noqa: F401 - Debian splits it into python3-venv
        import venv  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"no venv/ensurepip: {exc}")
    base = tmp_path_factory.mktemp("packaging")
    checkout = base / "checkout"
    _copy_checkout(checkout)
    cwd = base / "cwd"
    cwd.mkdir()
    inst = Installed(base / "venv", cwd)
    out = inst.run([sys.executable, "-m", "venv", "--system-site-packages", str(inst.venv)])
    assert out.returncode == 0, out.stdout + out.stderr
    out = inst.run([str(inst.python), "-c", "import ferry"])
    assert out.returncode != 0 and "No module named 'ferry'" in out.stderr, (
        "ferry is importable in the new environment before the install: " + out.stderr)
    out = inst.run([str(inst.python), "-m", "pip", "install", str(checkout / "bindings" / "python")],
                   timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return inst


def test_the_wheel_is_a_platform_wheel_holding_libferry_and_ferry_stat(installed):
    package = installed.package_dir()
    assert package.parent.parent.parent.parent == installed.venv  # lib/pythonX.Y/site-packages
    assert (package / "libferry.so").is_file()
    assert os.access(package / "bin" / "ferry-stat", os.X_OK)
    dist_info = next(package.parent.glob("ferry-*.dist-info"))
    wheel = (dist_info / "WHEEL").read_text()
    assert "Root-Is-Purelib: false" in wheel
    tag = next(line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag:"))
    assert tag.startswith("py3-none-") and not tag.endswith("-any")
    record = (dist_info / "RECORD").read_text()
    assert "ferry/libferry.so," in record and "ferry/bin/ferry-stat," in record
    # No run-time dependency: numpy and torch are extras.
    metadata = (dist_info / "METADATA").read_text()
    assert "Requires-Dist" not in metadata.split("Provides-Extra")[0]


def test_the_installed_package_finds_its_own_library_without_ferry_library(installed):
    got = installed.python_json("""
        import json, os, sys, ferry
        print(json.dumps({"path": ferry.library_path(), "version": ferry.version(),
                          "env": "FERRY_LIBRARY" in os.environ}))
    """)
    assert not got["env"]
    assert got["path"] == str(installed.package_dir() / "libferry.so")
    assert got["version"] == "0.1.0"


def test_an_offload_forward_runs_from_the_installed_package(installed):
    out = installed.run([str(installed.python), "-c", "import torch"])
    if out.returncode != 0:
        pytest.skip("torch is not importable in the new environment (system site-packages)")
    got = installed.python_json("""
        import json, sys, torch, ferry, ferry.torch
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(6)]).eval()
        x = torch.randn(4, 64)
        with torch.no_grad():
            want = model(x)
        handle = ferry.torch.offload(model, budget="50%", backend="sim")
        with torch.no_grad():
            first, second = model(x), model(x)
        stats = handle.stats()
        handle.close()
        print(json.dumps({"equal": bool(torch.equal(first, want) and torch.equal(second, want)),
                          "passes": stats["passes"], "bytes_h2d": stats["bytes_h2d"],
                          "ferry": ferry.__file__, "library": ferry.library_path(),
                          "sys_path": sys.path}))
    """)
    assert got["equal"]
    assert got["passes"] == 2 and got["bytes_h2d"] > 0
    assert got["ferry"].startswith(str(installed.venv))
    assert got["library"].startswith(str(installed.venv))
    assert not any(p and pathlib.Path(p).resolve() == REPO / "bindings" / "python"
                   for p in got["sys_path"])


def test_ferry_library_still_wins_over_the_bundled_library(installed, tmp_path):
    chosen = tmp_path / "elsewhere" / "libferry.so"
    chosen.parent.mkdir()
    shutil.copy(installed.package_dir() / "libferry.so", chosen)
    env = dict(_clean_env(), FERRY_LIBRARY=str(chosen))
    got = installed.python_json("import json, ferry; print(json.dumps(ferry.library_path()))",
                                env=env)
    assert got == str(chosen)
    # One that does not load is reported, not replaced by the bundled one.
    env["FERRY_LIBRARY"] = str(tmp_path / "missing" / "libferry.so")
    out = installed.run([str(installed.python), "-c", "import ferry; ferry.version()"], env=env)
    assert out.returncode != 0 and "LibraryNotFoundError" in out.stderr
    assert "could not load libferry from FERRY_LIBRARY" in out.stderr


def test_ferry_stat_runs_as_a_console_script_and_as_python_m_ferry_stat(installed):
    for command in ([str(installed.venv / "bin" / "ferry-stat"), "--help"],
                    [str(installed.python), "-m", "ferry.stat", "--help"]):
        out = installed.run(command)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith("usage: ferry-stat"), out.stdout + out.stderr
