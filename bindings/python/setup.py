"""Builds libferry and ferry-stat with Meson and ships them inside the ferry package.

The package lives in bindings/python/, the Meson project is the repository root two
levels up: `pip install ./bindings/python` (pip builds in place, so the root is there)
configures the root into a temporary build directory, compiles the two targets, and
copies them into the wheel as ferry/libferry.so and ferry/bin/ferry-stat. The wheel is
tagged for the platform (py3-none-<platform>): the package has no extension module, but
it holds native code.

Meson options: -Dtests=false (no Catch2 needed), -Dbuildtype=release, -Dwerror=false
(a newer compiler's new warning must not fail an install), and the cuda backend when
nvcc is found (-Dcuda=auto): on PATH, else in $CUDA_HOME, $CUDA_PATH or /usr/local/cuda.
FERRY_MESON_ARGS adds `meson setup` arguments, e.g. FERRY_MESON_ARGS=-Dcuda=disabled.
Editable installs build nothing: the package then finds <repo>/build/libferry.so.
"""

import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py as _build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel as _bdist_wheel

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the Meson project: <repo>/bindings/python/setup.py


def _meson():
    found = shutil.which("meson")
    return [found] if found else [sys.executable, "-m", "mesonbuild.mesonmain"]


def _environment():
    """The build's environment: a toolkit's bin/ on PATH when nvcc is not already."""
    env = dict(os.environ)
    if shutil.which("nvcc", path=env.get("PATH")):
        return env
    for root in (env.get("CUDA_HOME"), env.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (pathlib.Path(root) / "bin" / "nvcc").is_file():
            env["PATH"] = str(pathlib.Path(root) / "bin") + os.pathsep + env.get("PATH", "")
            break
    return env


def build_native(out_dir):
    """Configures and compiles the root project; copies libferry and ferry-stat into
    out_dir (the built package's ferry/ folder)."""
    if not (ROOT / "meson.build").is_file() or not (ROOT / "include" / "ferry" / "ferry.h").is_file():
        raise RuntimeError(
            f"ferry: the Meson project is not at {ROOT}: build the package from a checkout "
            "of the repository (pip install ./bindings/python), not from bindings/python alone")
    env = _environment()
    with tempfile.TemporaryDirectory(prefix="ferry-meson-") as build:
        setup_args = ["-Dtests=false", "-Dbuildtype=release", "-Dwerror=false"]
        setup_args += shlex.split(env.get("FERRY_MESON_ARGS", ""))
        for args in (["setup", build, str(ROOT)] + setup_args,
                     ["compile", "-C", build, "ferry", "tools/ferry-stat"]):
            command = _meson() + args
            print("ferry:", shlex.join(command), flush=True)
            if subprocess.call(command, env=env) != 0:
                raise RuntimeError(f"ferry: `{shlex.join(command)}` failed (its output is above)")
        out_dir = pathlib.Path(out_dir)
        (out_dir / "bin").mkdir(parents=True, exist_ok=True)
        # One real file, no links (a wheel holds none); ctypes loads it by path.
        shutil.copy2(os.path.realpath(os.path.join(build, "libferry.so")), out_dir / "libferry.so")
        shutil.copy2(os.path.join(build, "tools", "ferry-stat"), out_dir / "bin" / "ferry-stat")


class build_py(_build_py):
    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            build_native(os.path.join(self.build_lib, "ferry"))


class NativeDistribution(Distribution):
    def has_ext_modules(self):
        return True  # native code inside: a platform wheel, installed in platlib


class bdist_wheel(_bdist_wheel):
    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform  # loaded with ctypes: any CPython 3 ABI


setup(distclass=NativeDistribution, cmdclass={"build_py": build_py, "bdist_wheel": bdist_wheel})
