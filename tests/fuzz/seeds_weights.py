#!/usr/bin/env python3
"""Writes the seed corpus of ferry-fuzz-weights (tests/fuzz/corpus-weights/): small
.safetensors files written by the safetensors package (through torch: every dtype it
writes, a zero-element tensor, a scalar, __metadata__), index files as transformers and
diffusers write them, and broken variants of both, one per check of load/weights.cpp.
The target parses each input both as a file and as an index (fuzz_weights.cpp).

Needs the PyPI safetensors and torch packages, as in build-venv/ (tools/venv):
    build-venv/bin/python tests/fuzz/seeds_weights.py
It rewrites the seed-*.bin files of the folder."""

import json
import pathlib
import struct
import sys

try:
    import torch
    from safetensors.torch import save
except ImportError:
    sys.exit("seeds_weights.py needs torch and safetensors (run it with build-venv/bin/python)")


def real_files():
    """name -> bytes of files the reference writer made."""
    g = torch.Generator().manual_seed(0)
    out = {
        "f32-bf16-f16": save({
            "transformer_blocks.0.attn.to_q.weight": torch.randn(4, 4, generator=g),
            "transformer_blocks.0.attn.to_q.bias": torch.randn(4, generator=g).bfloat16(),
            "transformer_blocks.1.norm.weight": torch.randn(3, generator=g).half(),
        }, metadata={"format": "pt"}),
        "ints-bool": save({
            "i64": torch.arange(3, dtype=torch.int64),
            "i32": torch.arange(2, dtype=torch.int32),
            "i16": torch.arange(2, dtype=torch.int16),
            "i8": torch.arange(2, dtype=torch.int8),
            "u8": torch.arange(2, dtype=torch.uint8),
            "mask": torch.tensor([True, False]),
            "f64": torch.tensor([1.5], dtype=torch.float64),
        }),
        "empty-and-scalar": save({
            "empty": torch.zeros(0, 7),
            "scalar": torch.tensor(2.0),
            "w": torch.ones(2, 3).bfloat16(),
        }, metadata={"note": "zero-element and 0-dim tensors"}),
        "no-tensors": save({}, metadata={"format": "pt"}),
    }
    extra = {}
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
        if hasattr(torch, name):
            extra[name] = torch.zeros(4).to(getattr(torch, name))
    for name in ("uint16", "uint32", "uint64"):
        if hasattr(torch, name):
            extra[name] = torch.zeros(2, dtype=getattr(torch, name))
    extra["c64"] = torch.zeros(2, dtype=torch.complex64)
    out["fp8-unsigned-complex"] = save(extra)
    return out


def file_of(header, data=b"", length=None):
    """A safetensors file from a header (a dict, or bytes as they are) and data bytes."""
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def broken_files():
    ok = entry("U8", [4], 0, 4)
    return {
        "short": b"\x10\x00\x00",
        "length-past-end": file_of({}, length=4096),
        "length-huge": file_of({}, length=(100 << 20) + 1),
        "data-past-end": file_of({"t": entry("F32", [4], 0, 16)}, b"\0" * 10),
        "not-utf8": file_of(b'{"t\xff":{}}'),
        "not-json": file_of(b'{"t": nope}'),
        "not-object": file_of([1, 2]),
        "entry-not-object": file_of({"t": [0, 4]}, b"\0" * 4),
        "missing-dtype": file_of({"t": {"shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4),
        "shape-string": file_of({"t": entry("U8", "4", 0, 4)}, b"\0" * 4),
        "dim-negative": file_of({"t": entry("U8", [-4], 0, 4)}, b"\0" * 4),
        "dim-float": file_of({"t": entry("U8", [4.0], 0, 4)}, b"\0" * 4),
        "nine-dims": file_of({"t": entry("U8", [1] * 9, 0, 1)}, b"\0"),
        "count-overflow": file_of({"t": entry("F64", [1 << 32, 1 << 32], 0, 0)}),
        "size-mismatch": file_of({"t": entry("BF16", [2, 3], 0, 10)}, b"\0" * 10),
        "begin-after-end": file_of({"t": entry("U8", [0], 4, 2)}, b"\0" * 4),
        "overlap": file_of({"a": ok, "b": entry("U8", [4], 2, 6)}, b"\0" * 6),
        "hole": file_of({"a": ok, "b": entry("U8", [4], 6, 10)}, b"\0" * 10),
        "trailing-bytes": file_of({"a": ok}, b"\0" * 7),
        "unknown-dtype": file_of({"t": entry("F7", [1], 0, 1)}, b"\0"),
        "f4-odd": file_of({"t": entry("F4", [3], 0, 2)}, b"\0" * 2),
        "f4-even": file_of({"t": entry("F4", [6], 0, 3), "u": entry("F6_E2M3", [4], 3, 6)},
                           b"\0" * 6),
        "duplicate-name": file_of(b'{"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
                                  b'"t":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}',
                                  b"\0" * 8),
        "duplicate-key": file_of(b'{"t":{"dtype":"U8","dtype":"F32","shape":[4],'
                                 b'"data_offsets":[0,4]}}', b"\0" * 4),
        "metadata-string": file_of({"__metadata__": "pt"}),
        "nul-in-name": file_of({"a\0b": entry("U8", [0], 0, 0)}),
        "deep-nesting": file_of(b"[" * 200 + b"]" * 200),
    }


def indexes():
    shards = [f"model-{i:05d}-of-00002.safetensors" for i in (1, 2)]
    good = {"metadata": {"total_size": 64},
            "weight_map": {"a.weight": shards[0], "a.bias": shards[0], "b.weight": shards[1]}}
    text = lambda value: json.dumps(value, indent=2).encode()
    return {
        "index-transformers": text(good),
        "index-diffusers": text({"metadata": {"total_size": 8},
                                 "weight_map": {"proj_out.weight":
                                                "diffusion_pytorch_model-00001-of-00001.safetensors"}}),
        "index-no-weight-map": text({"metadata": {}}),
        "index-map-array": text({"weight_map": []}),
        "index-shard-not-string": text({"weight_map": {"t": 3}}),
        "index-shard-parent": text({"weight_map": {"t": "../x.safetensors"}}),
        "index-shard-absolute": text({"weight_map": {"t": "/x.safetensors"}}),
        "index-duplicate": b'{"weight_map":{"t":"a.safetensors","t":"b.safetensors"}}',
        "index-truncated": text(good)[:40],
    }


def main():
    corpus = pathlib.Path(__file__).resolve().parent / "corpus-weights"
    corpus.mkdir(exist_ok=True)
    for old in corpus.glob("seed-*.bin"):
        old.unlink()
    seeds = {**real_files(), **broken_files(), **indexes()}
    for name, data in seeds.items():
        (corpus / f"seed-{name}.bin").write_bytes(data)
    print(f"{len(seeds)} seeds in {corpus}")


if __name__ == "__main__":
    main()
