"""safetensors files written by hand for the loader tests, so that both test lanes (with
and without the PyPI safetensors package) can make them, good and bad alike.

The format: an 8-byte little-endian header length, a JSON header mapping each tensor name
to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data that follows
the header), padded with spaces to 8 bytes, then the data."""

import json
import struct

import numpy as np

_NUMPY_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
    "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
}


def _header(tensors, metadata):
    header = {}
    end = 0
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [end, end + len(raw)]}
        end += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def encode(tensors, metadata=None):
    """The bytes of a file holding tensors: {name: (dtype string, shape, raw bytes)}, laid
    out in name order."""
    return _header(tensors, metadata) + b"".join(tensors[n][2] for n in sorted(tensors))


def write(path, tensors, metadata=None):
    """Writes encode(tensors) to path, tensor by tensor; returns path."""
    with open(path, "wb") as f:
        f.write(_header(tensors, metadata))
        for name in sorted(tensors):
            f.write(tensors[name][2])
    return path


def entry(array, dtype=None):
    """(dtype string, shape, bytes) of a numpy array; dtype overrides the string (BF16:
    give the raw uint16 words)."""
    if dtype is None:
        dtype = next(k for k, v in _NUMPY_DTYPES.items() if np.dtype(v) == array.dtype)
    return dtype, array.shape, np.ascontiguousarray(array).tobytes()


def torch_entry(t):
    """(dtype string, shape, bytes) of a torch tensor (any of ferry's dtypes)."""
    import torch

    t = t.detach().cpu().contiguous()
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
             torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
    if t.dtype == torch.bfloat16:
        raw = t.view(torch.int16).numpy().tobytes()
    else:
        raw = t.numpy().tobytes()
    return names[t.dtype], tuple(t.shape), raw


def write_state_dict(path, state_dict):
    """A file of a torch state dict: each distinct tensor once, under its first name (a
    tie, under several names, is saved once, as transformers saves it)."""
    seen = set()
    tensors = {}
    for name, t in state_dict.items():
        key = (t.data_ptr(), t.dtype, tuple(t.shape)) if t.numel() else id(t)
        if key in seen:
            continue
        seen.add(key)
        tensors[name] = torch_entry(t)
    return write(path, tensors)


def write_sharded(folder, tensors, shards, stem="model"):
    """Writes tensors over `shards` files and their index, as transformers names them
    (<stem>-00001-of-00002.safetensors, <stem>.safetensors.index.json); returns the
    index's path."""
    names = sorted(tensors)
    per = -(-len(names) // shards)
    weight_map = {}
    for i in range(shards):
        file = f"{stem}-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[i * per:(i + 1) * per]}
        write(folder / file, part)
        weight_map.update({n: file for n in part})
    index = folder / f"{stem}.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def bf16_words(values):
    """float32 values rounded to bfloat16 (nearest, ties to even) as uint16 words."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)
