"""Weights: safetensors files (one file, the shards of an index, or a model folder) read
straight into a runtime's host store.

    with ferry.Weights("model/") as w:                  # ferry_weights_open: headers only
        rt = ferry.Runtime("8GiB")
        groups = rt.define_from(w, ["transformer_blocks."])
        rt.plan()
        report = rt.load(w)                             # ferry_weights_load
        rt.seal()

Opening reads and checks every header (offsets, shapes, dtypes against each file's size)
and no tensor byte. A bad file raises FileTruncatedError, FileFormatError or
WeightsIOError naming the file (and the tensor).
"""

import ctypes
import dataclasses
import os

from . import _lib
from .errors import ClosedError, InvalidArgumentError, check

__all__ = ["Weights", "WeightsTensor", "LoadReport"]


@dataclasses.dataclass(frozen=True)
class WeightsTensor:
    """One tensor of the files (ferry_weights_tensor)."""

    name: str
    dtype: str  # the header's dtype string: "BF16", "F32", "F8_E4M3", ...
    shape: tuple
    nbytes: int
    file: str  # path of the file holding it
    offset: int  # of its first byte in that file
    ferry_dtype: object  # ferry.DType; DType.UNKNOWN for a dtype ferry has no enum for

    @property
    def bytes(self):
        return self.nbytes


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What Runtime.load did (ferry_load_report)."""

    tensors_read: int  # tensors read into the host store
    tensors_converted: int  # ... of which converted to another dtype
    tensors_on_disk: int  # tensors left on the disk tier
    bytes_read: int  # file bytes read
    bytes_on_disk: int  # file bytes left on the disk tier
    direct_bytes: int  # of bytes_read, read with O_DIRECT
    elapsed_ns: int
    threads: int  # reader threads used

    def as_dict(self):
        return dataclasses.asdict(self)


class Weights:
    """A set of safetensors files, opened with their headers checked (ferry_weights_open).

    path: a .safetensors file, a *.safetensors.index.json (its shards are opened too), or
    a folder holding model.safetensors[.index.json] (transformers) or
    diffusion_pytorch_model.safetensors[.index.json] (diffusers). The files stay open
    until close(); a runtime that reads from them at onload (disk tier) keeps them open
    itself, so the weights may be closed once loaded.

    len(w), iteration (sorted by name), ``name in w``, ``w[name]`` and tensors() describe
    the tensors as WeightsTensor values."""

    def __init__(self, path):
        self._ptr = None
        self._lib = _lib.lib()
        self.path = os.fspath(path)
        ptr = ctypes.c_void_p()
        check(self._lib.ferry_weights_open(os.fsencode(self.path), ctypes.byref(ptr)))
        self._ptr = ptr
        self._tensors = None  # list of WeightsTensor, read once (the files are immutable)
        self._index = None  # name -> position in _tensors

    # --- lifecycle -------------------------------------------------------------------

    @property
    def closed(self):
        return self._ptr is None

    def _handle(self):
        if self._ptr is None:
            raise ClosedError(f"ferry: weights '{self.path}' are closed")
        return self._ptr

    def close(self):
        """ferry_weights_close. Idempotent. Runtimes that read from the files keep them
        open themselves."""
        if self._ptr is None:
            return
        ptr, self._ptr = self._ptr, None
        check(self._lib.ferry_weights_close(ptr))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing to report to at collection time
            pass

    def __repr__(self):
        if self.closed:
            return f"<ferry.Weights '{self.path}' closed>"
        return f"<ferry.Weights '{self.path}' ({len(self)} tensors)>"

    # --- the tensors -----------------------------------------------------------------

    def tensors(self):
        """Every tensor of the files, sorted by name, as WeightsTensor values."""
        if self._tensors is None:
            from .runtime import DType

            handle = self._handle()
            count = ctypes.c_uint64()
            check(self._lib.ferry_weights_count(handle, ctypes.byref(count)))
            out = []
            raw = _lib.WeightsTensorStruct()
            for i in range(count.value):
                check(self._lib.ferry_weights_tensor_at(handle, i, ctypes.byref(raw)))
                try:
                    dtype = DType(raw.dtype)
                except ValueError:
                    dtype = DType.UNKNOWN
                out.append(WeightsTensor(
                    name=raw.name.decode(),
                    dtype=raw.file_dtype.decode(),
                    shape=tuple(int(raw.shape[d]) for d in range(raw.ndim)),
                    nbytes=int(raw.bytes),
                    file=os.fsdecode(raw.file),
                    offset=int(raw.file_offset),
                    ferry_dtype=dtype,
                ))
            self._tensors = out
            self._index = {t.name: i for i, t in enumerate(out)}
        return list(self._tensors)

    def _by_name(self):
        if self._index is None:
            self.tensors()
        return self._index

    @property
    def files(self):
        """The paths of the files, in the order their first tensor appears by name."""
        return list(dict.fromkeys(t.file for t in self.tensors()))

    @property
    def nbytes(self):
        """Bytes of every tensor of the files."""
        return sum(t.nbytes for t in self.tensors())

    def __len__(self):
        return len(self._by_name())

    def __iter__(self):
        return iter(self.tensors())

    def __contains__(self, name):
        return isinstance(name, str) and name in self._by_name()

    def __getitem__(self, name):
        try:
            position = self._by_name()[name]
        except KeyError:
            raise KeyError(f"ferry: no tensor {name!r} in '{self.path}'") from None
        return self._tensors[position]

    def find(self, name):
        """ferry_weights_find: the tensor's position in sorted order; InvalidArgumentError
        naming the files when no tensor has that name."""
        out = ctypes.c_uint64()
        check(self._lib.ferry_weights_find(self._handle(), name.encode(), ctypes.byref(out)))
        return int(out.value)


class _LoadProgress:
    """A Python callable behind a ferry_load_progress_fn, for one load. An exception it
    raises is kept (ctypes would print and drop it) and raised by Runtime.load once the
    load returns; the callable is not called again meanwhile."""

    def __init__(self, fn):
        self.fn = fn
        self.error = None
        self.c_fn = _lib.LoadProgressFn(self._call)

    def _call(self, user, done, total):
        if self.error is not None:
            return
        try:
            self.fn(int(done), int(total))
        except BaseException as exc:  # noqa: BLE001 - re-raised by Runtime.load
            self.error = exc


class _LoadBar:
    """A load progress callable driving a bar in bytes, made at the first call."""

    def __init__(self, progress, desc):
        from . import _progress

        self._make = lambda total: _progress.bar(progress, total, desc)
        self._bar = None
        self._started = False
        self._done = 0

    def __call__(self, done, total):
        if not self._started:
            self._started = True
            self._bar = self._make(total)
        if self._bar is not None:
            self._bar.update(done - self._done)
            self._done = done

    def close(self):
        if self._bar is not None:
            self._bar.close()


def load(runtime, weights, tensors=None, name_prefix="", allow_unused=False,
         convert_dtype=True, threads=0, direct=False, disk_tier=True, progress=None):
    """Runtime.load: see there."""
    if not isinstance(weights, Weights):
        raise InvalidArgumentError(
            f"ferry: load() reads a ferry.Weights, not {type(weights).__name__}")
    lib = runtime._lib
    opts = _lib.LoadOptionsStruct()
    lib.ferry_load_options_init(ctypes.byref(opts))
    prefix = name_prefix.encode() if name_prefix else None
    opts.name_prefix = prefix
    array = None
    if tensors is not None:
        tensors = list(tensors)
        array = (_lib.TensorHandle * max(len(tensors), 1))(*[t._h for t in tensors])
        opts.tensors = ctypes.cast(array, ctypes.POINTER(_lib.TensorHandle))
        opts.tensor_count = len(tensors)
    opts.allow_unused = int(bool(allow_unused))
    opts.convert_dtype = int(bool(convert_dtype))
    opts.threads = int(threads)
    opts.direct = int(bool(direct))
    opts.disk_tier = int(bool(disk_tier))
    bar = None
    if callable(progress):
        fn = progress
    elif progress in (None, True, False):
        fn = bar = _LoadBar(progress, "ferry: loading") if progress is not False else None
    else:
        raise InvalidArgumentError(
            f"ferry: progress must be None, True, False or a callable, not {progress!r}")
    callback = _LoadProgress(fn) if fn is not None else None
    if callback is not None:
        opts.progress = callback.c_fn
    report = _lib.LoadReportStruct()
    report.struct_size = ctypes.sizeof(_lib.LoadReportStruct)
    try:
        status = lib.ferry_weights_load(runtime._handle(), weights._handle(),
                                        ctypes.byref(opts), ctypes.byref(report))
    finally:
        if bar is not None:
            bar.close()
    error = callback.error if callback is not None else None
    if error is not None:
        try:
            raise error
        except BaseException:
            check(status)  # a failed load wins, with the callback's exception as context
            raise
    check(status)
    del array, prefix  # kept alive until the call returned
    return LoadReport(**{name: int(getattr(report, name))
                         for name, _ in _lib.LoadReportStruct._fields_ if name != "struct_size"})
