"""ferry-stat, the reader of the stats segments runtimes publish, run from Python.

A wheel ships the program as ferry/bin/ferry-stat; ``ferry-stat ARGS`` (the package's
console script) and ``python -m ferry.stat ARGS`` run it. In a checkout the one in the
build tree (<repo>/build/tools/ferry-stat) is used instead.
"""

import os
import pathlib
import sys

__all__ = ["main", "program_path"]

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent


def program_path():
    """The ferry-stat executable this package runs, or None when there is none."""
    for candidate in (_PACKAGE_DIR / "bin" / "ferry-stat",
                      _PACKAGE_DIR.parent.parent.parent / "build" / "tools" / "ferry-stat"):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def main(argv=None):
    """Replaces this process with ferry-stat ARGV (default: sys.argv[1:])."""
    args = sys.argv[1:] if argv is None else list(argv)
    program = program_path()
    if program is None:
        sys.stderr.write("ferry-stat: not bundled with this ferry package and not built in "
                         "its checkout (meson compile -C build tools/ferry-stat)\n")
        return 127
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(program, [program] + args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
