#!/usr/bin/env python3
"""ferry's dtype conversion at load against torch's .to() on the CPU, byte for byte.

    test_convert_torch.py LIBFERRY

Writes an F32, a BF16 and an F16 safetensors tensor, loads each into tensors of the other
float dtypes through libferry's C API (sim backend), reads them back with
ferry_tensor_copy_out and compares with torch. A NaN only needs to be a NaN: torch's own
paths disagree on NaN bits (its vector F32 -> BF16 gives 0xFFFF whatever the sign, its
scalar one 0x7FC0), while ferry keeps the sign (tests/test_convert.cpp checks that).
Exits 77 (skipped) without torch.
"""

import ctypes
import json
import os
import struct
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as error:  # the interpreter has no torch: nothing to compare with
    print(f"SKIP: {error}")
    sys.exit(77)

F16, BF16, F32 = 6, 7, 8
TORCH = {F16: torch.float16, BF16: torch.bfloat16, F32: torch.float32}
NAME = {F16: "F16", BF16: "BF16", F32: "F32"}
SIZE = {F16: 2, BF16: 2, F32: 4}


class Config(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("backend", ctypes.c_int),
                ("device", ctypes.c_int32), ("vram_budget", ctypes.c_uint64),
                ("slots_per_class", ctypes.c_uint32), ("synchronous", ctypes.c_int32),
                ("name", ctypes.c_char_p), ("sim_h2d_gbps", ctypes.c_double),
                ("sim_d2h_gbps", ctypes.c_double), ("sim_latency_us", ctypes.c_double),
                ("sim_chaos", ctypes.c_int32), ("sim_seed", ctypes.c_uint64),
                ("publish_stats", ctypes.c_int32), ("verify", ctypes.c_int32),
                ("pinned_cap_bytes", ctypes.c_uint64), ("pageable_fallback", ctypes.c_int32)]


class Handle(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64)]


def samples():
    """Every BF16 and F16 pattern (as F32), float edge cases and random F32 patterns."""
    patterns = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    bf16 = torch.from_numpy(patterns.view(np.int16).copy()).view(torch.bfloat16).float()
    f16 = torch.from_numpy(patterns.view(np.float16).copy()).float()
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2**32, size=400000, dtype=np.uint64).astype(np.uint32)
    near = (bits & 0x807FFFFF) | (((bits >> 23) % 42 + 102) << 23).astype(np.uint32)
    edges = np.array([0.0, -0.0, 1.0, 65504.0, 65519.99, 65520.0, 65536.0, 3.4e38, -3.4e38,
                      1.17549435e-38, 1e-45, 2.0**-24, 2.0**-25, 1.5 * 2.0**-25, 2.0**-14],
                     dtype=np.float32)
    ties = np.array([0x3F808000, 0x3F818000, 0x3F801000, 0x3F803000, 0x7F7F8000, 0x7F7F7FFF],
                     dtype=np.uint32).view(np.float32)
    return torch.cat([bf16, f16, torch.from_numpy(bits.view(np.float32)),
                      torch.from_numpy(near.view(np.float32)), torch.from_numpy(edges),
                      torch.from_numpy(ties)])


def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, (dtype, data) in tensors.items():
        header[name] = {"dtype": NAME[dtype], "shape": [len(data) // SIZE[dtype]],
                        "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def same(got, want, dtype):
    """Bytes equal, except that a NaN only needs to be a NaN."""
    g = torch.frombuffer(bytearray(got), dtype=TORCH[dtype]).float()
    w = want.float()
    nan = torch.isnan(w)
    assert torch.equal(torch.isnan(g), nan), "NaN where torch has none, or none where it has"
    wb = want.contiguous().view(torch.int16 if SIZE[dtype] == 2 else torch.int32)
    gb = torch.frombuffer(bytearray(got), dtype=wb.dtype)
    bad = (gb != wb) & ~nan
    assert not bool(bad.any()), f"{int(bad.sum())} elements differ from torch, first at " \
                                f"{int(bad.nonzero()[0])}"


def main():
    lib = ctypes.CDLL(sys.argv[1])
    lib.ferry_last_error.restype = ctypes.c_char_p
    ok = lambda status, call: status == 0 or sys.exit(f"{call}: {lib.ferry_last_error().decode()}")
    values = samples()
    sources = {F32: values, BF16: values.to(torch.bfloat16), F16: values.to(torch.float16)}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "convert.safetensors")
        write_safetensors(path, {NAME[d]: (d, t.contiguous().view(torch.uint8).numpy().tobytes())
                                 for d, t in sources.items()})
        config = Config()
        lib.ferry_config_init(ctypes.byref(config))
        config.backend = 2  # sim
        config.vram_budget = 64 << 20
        runtime = ctypes.c_void_p()
        ok(lib.ferry_create(ctypes.byref(config), ctypes.byref(runtime)), "ferry_create")
        n = len(values)
        defined = []
        for source in (F32, BF16, F16):
            for target in (F32, BF16, F16):
                if source == target:
                    continue
                group = Handle()
                ok(lib.ferry_group_define(runtime, f"{NAME[source]}-to-{NAME[target]}".encode(),
                                          ctypes.byref(group)), "ferry_group_define")
                tensor = Handle()
                shape = (ctypes.c_int64 * 1)(n)
                ok(lib.ferry_tensor_define(runtime, group, NAME[source].encode(),
                                           ctypes.c_uint64(n * SIZE[target]), target, 1, shape, 0,
                                           ctypes.byref(tensor)), "ferry_tensor_define")
                defined.append((source, target, tensor))
        ok(lib.ferry_plan(runtime), "ferry_plan")
        weights = ctypes.c_void_p()
        ok(lib.ferry_weights_open(path.encode(), ctypes.byref(weights)), "ferry_weights_open")
        ok(lib.ferry_weights_load(runtime, weights, None, None), "ferry_weights_load")
        for source, target, tensor in defined:
            out = ctypes.create_string_buffer(n * SIZE[target])
            ok(lib.ferry_tensor_copy_out(runtime, tensor, ctypes.c_uint64(0), out,
                                         ctypes.c_uint64(n * SIZE[target])), "copy_out")
            try:
                same(out.raw, sources[source].to(TORCH[target]), target)
            except AssertionError as error:
                sys.exit(f"{NAME[source]} -> {NAME[target]}: {error}")
            print(f"{NAME[source]} -> {NAME[target]}: {n} elements as torch")
        lib.ferry_weights_close(weights)
        lib.ferry_destroy(runtime)


if __name__ == "__main__":
    main()
