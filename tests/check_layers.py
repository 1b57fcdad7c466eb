#!/usr/bin/env python3
"""Checks that each room of runtime/ includes only the rooms below it (README "Layout").

    check_layers.py SOURCE_ROOT [EXPECTED]

Rooms, from the bottom: base/; device/; host/, load/, codec/, trust/ and observe/ (side by
side, never including one another); core/; and the C API at the top of runtime/. Every quoted
include in runtime/ names its room ("device/device.hpp"), ferry.h, or a kernel header
("kernels/checksum.hpp"). kernels/ uses only base/. The tools get the same check:
ferry-stat reads the stats segment and the shared host stores' headers and may use only
base/, observe/ and host/; ferry-bench drives the runtime and may use base/, device/,
core/ and codec/ (it times the device's decode of a container on its own);
ferry-codec-ratio uses base/, load/ and codec/. Prints each violation as
FILE:LINE and exits 1 when there is one. With EXPECTED (the test of the check itself, on
tests/layers_violation/), exits 0 only when exactly that many violations are found.
"""

import pathlib
import re
import sys

RANK = {"base": 0, "device": 1, "host": 2, "load": 2, "codec": 2, "trust": 2, "observe": 2,
        "core": 3, "": 4}
KERNEL_USERS = {"device", "codec", "trust", "core"}  # rooms that may include kernels/
TOOL_ROOMS = {
    "tools/ferry-stat": {"base", "observe", "host"},
    "tools/bench": {"base", "device", "codec", "core"},
    "tools/ferry-load": set(),  # the public C API only, as an engine uses ferry
    "tools/codec-ratio": {"base", "load", "codec"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
SOURCES = ("*.hpp", "*.cpp", "*.h", "*.cu", "*.cuh")


def sources(folder):
    for pattern in SOURCES:
        yield from sorted(folder.rglob(pattern))


def included(path):
    text = path.read_text(errors="replace")
    for match in INCLUDE.finditer(text):
        yield text.count("\n", 0, match.start()) + 1, match.group(1)


def room_of(include):
    """The room an include names ("device/device.hpp" -> "device"), or None."""
    head, _, tail = include.partition("/")
    return head if tail and head in RANK and head else None


def check_runtime(root, errors):
    runtime = root / "runtime"
    for path in sources(runtime):
        rel = path.relative_to(runtime)
        room = rel.parts[0] if len(rel.parts) > 1 else ""
        if room not in RANK:
            errors.append(f"{path.relative_to(root)}: runtime/{room}/ is not a room "
                          f"(add it to {pathlib.Path(__file__).name})")
            continue
        for line, include in included(path):
            where = f"{path.relative_to(root)}:{line}: {room or 'the top'}"
            target = room_of(include)
            if include == "ferry/ferry.h":
                continue
            if include.startswith("kernels/"):
                if room not in KERNEL_USERS and room != "":
                    errors.append(f'{where} includes "{include}": only '
                                  f"{', '.join(sorted(KERNEL_USERS))} use kernels/")
                continue
            if target is None:
                if room == "" and (runtime / include).is_file():
                    continue  # the top's own headers (error_state.hpp)
                errors.append(f'{where} includes "{include}", which names no room '
                              '(write "room/file.hpp")')
                continue
            if not (runtime / include).is_file():
                errors.append(f'{where} includes "{include}", which does not exist')
            elif target != room and RANK[target] >= RANK[room]:
                errors.append(f'{where} includes "{include}": a room uses only the rooms '
                              f"below it, and {target}/ is not below {room or 'the top'}")


def check_kernels(root, errors):
    for path in sources(root / "kernels"):
        for line, include in included(path):
            target = room_of(include.replace("../runtime/", "", 1))
            if include.startswith("../runtime/") and target != "base":
                errors.append(f'{path.relative_to(root)}:{line}: kernels/ includes '
                              f'"{include}": kernels/ uses only runtime/base/')


def check_tools(root, errors):
    for tool, allowed in TOOL_ROOMS.items():
        for path in sources(root / tool):
            for line, include in included(path):
                target = room_of(include)
                if target is not None and target not in allowed:
                    errors.append(f'{path.relative_to(root)}:{line}: {tool} includes '
                                  f'"{include}": it may use only '
                                  f"{', '.join(sorted(allowed)) or 'nothing'} of runtime/")


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    root = pathlib.Path(argv[1])
    errors = []
    check_runtime(root, errors)
    check_kernels(root, errors)
    check_tools(root, errors)
    for error in errors:
        print(error)
    checked = sum(1 for d in ("runtime", "kernels", *TOOL_ROOMS) for _ in sources(root / d))
    print(f"check_layers: {checked} files, {len(errors)} violation(s)")
    if len(argv) == 3:
        return 0 if len(errors) == int(argv[2]) else 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
