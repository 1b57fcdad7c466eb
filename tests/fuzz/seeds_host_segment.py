#!/usr/bin/env python3
"""Writes the seed corpus of the host segment fuzz target (fuzz_host_segment.cpp):
a valid shared host store segment and broken ones, into tests/fuzz/corpus-host-segment/.
The layout follows hostshm::Header (runtime/host/segment_header.hpp); the target's
static_assert keeps its size in step."""

import pathlib
import struct

HEADER = 25216
VERSION = 2
PAGE = 4096
MAGIC = 0x3174736F68797266
LAYOUT = (b"ferry host store layout 1: page 4096, alignment 256, 1 groups, 1 tensors, 4096 bytes\n"
          b"group 0 'block.0', 1 tensors\n"
          b"tensor 'w' of group 'block.0': 1000 bytes at 0, raw bytes [], immutable\n"
          b"image of group 'block.0': 1024 bytes at 0, mutable from 1024, head 0\n")


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def segment(version=VERSION, header_bytes=HEADER, page=PAGE, layout=LAYOUT, layout_hash=None,
            data_offset=None, data_bytes=PAGE, state=2, members=1, magic=MAGIC, cut=0):
    layout_offset = (HEADER + 63) // 64 * 64
    if data_offset is None:
        data_offset = (layout_offset + len(layout) + PAGE - 1) // PAGE * PAGE
    if layout_hash is None:
        layout_hash = fnv1a64(layout)
    head = struct.pack("<QIIIIQQQQQQIIqQQQIIII", magic, version, header_bytes, 1000, page,
                       layout_offset, len(layout), layout_hash, data_offset, data_bytes, 0,
                       state, 1, 4242, 77, 0, 0, members, 0, 0, 0)
    out = bytearray(data_offset + data_bytes)
    out[:len(head)] = head
    member = struct.pack("<qQQII", 4242, 77, 1, 1, 0) + b"model".ljust(64, b"\0")
    at = len(head) + 512
    out[at:at + len(member)] = member
    out[layout_offset:layout_offset + len(layout)] = layout
    return bytes(out[:len(out) - cut])


def main():
    folder = pathlib.Path(__file__).parent / "corpus-host-segment"
    folder.mkdir(exist_ok=True)
    seeds = {
        "valid": segment(),
        "loading": segment(state=1),
        "truncated": segment(cut=100),
        "header-only": segment()[:HEADER],
        "bad-magic": segment(magic=0x1234),
        "unsettled": segment(magic=0),
        "version-1": segment(version=1),
        "bad-hash": segment(layout_hash=1),
        "bad-state": segment(state=9),
        "too-many-members": segment(members=100000),
        "odd-page": segment(page=5000),
    }
    valid = bytearray(segment())
    valid[48:56] = struct.pack("<Q", 2**64 - PAGE)  # data_offset: offset + bytes overflows
    seeds["data-offset-overflow"] = bytes(valid)
    for name, data in seeds.items():
        (folder / f"seed-{name}.bin").write_bytes(data)


if __name__ == "__main__":
    main()
