"""Runtime, Group and Tensor: the C lifecycle of include/ferry/ferry.h, in Python.

    with ferry.Runtime("1GiB", backend="sim") as rt:        # ferry_create .. ferry_destroy
        g = rt.define_group("block.0")                       # DEFINE
        w = g.define_tensor("w", dtype="float32", shape=(1024, 1024))
        rt.plan()                                            # -> PLANNED
        w.copy_in(data)                                      # load the host store
        rt.seal()                                            # -> SEALED
        with g.acquired():                                   # ferry_acquire/_release
            view = w.device_view()                           # DLPack / array interface
"""

import atexit
import contextlib
import ctypes
import enum
import math
import os
import threading

from . import _lib
from . import dlpack as _dlpack
from .errors import ClosedError, InvalidArgumentError, check
from .units import parse_bytes

__all__ = [
    "Backend",
    "DType",
    "Phase",
    "Runtime",
    "Group",
    "Tensor",
    "HostView",
    "CudaView",
    "STATS_KEYS",
    "version",
    "version_number",
]

TENSOR_MUTABLE = 1
MAX_DIMS = 8


class Backend(enum.IntEnum):
    AUTO = 0
    CUDA = 1
    SIM = 2


class Phase(enum.IntEnum):
    DEFINE = 0
    PLANNED = 1
    SEALED = 2


class DType(enum.IntEnum):
    UNKNOWN = 0
    U8 = 1
    I8 = 2
    I16 = 3
    I32 = 4
    I64 = 5
    F16 = 6
    BF16 = 7
    F32 = 8
    F64 = 9
    BOOL = 10

    @property
    def itemsize(self):
        return _ITEMSIZE[self]

    @property
    def array_name(self):
        """The numpy/torch-style name ("float32"); None for UNKNOWN."""
        return _ARRAY_NAME.get(self)

    @classmethod
    def of(cls, value):
        """A DType from a DType, an int, a name ("f32", "float32", "bfloat16"), or a
        numpy or torch dtype (anything whose str() is such a name)."""
        if value is None:
            return cls.UNKNOWN
        if isinstance(value, cls):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        name = str(value).lower()
        if name.startswith("torch."):
            name = name[len("torch.") :]
        try:
            return _BY_NAME[name]
        except KeyError:
            raise InvalidArgumentError(f"ferry: no ferry dtype for {value!r}") from None


_ITEMSIZE = {
    DType.UNKNOWN: 1,
    DType.U8: 1,
    DType.I8: 1,
    DType.I16: 2,
    DType.I32: 4,
    DType.I64: 8,
    DType.F16: 2,
    DType.BF16: 2,
    DType.F32: 4,
    DType.F64: 8,
    DType.BOOL: 1,
}
_ARRAY_NAME = {
    DType.U8: "uint8",
    DType.I8: "int8",
    DType.I16: "int16",
    DType.I32: "int32",
    DType.I64: "int64",
    DType.F16: "float16",
    DType.BF16: "bfloat16",
    DType.F32: "float32",
    DType.F64: "float64",
    DType.BOOL: "bool",
}
_BY_NAME = {name: dt for dt, name in _ARRAY_NAME.items()}
_BY_NAME.update(
    {
        "unknown": DType.UNKNOWN,
        "u8": DType.U8,
        "i8": DType.I8,
        "i16": DType.I16,
        "i32": DType.I32,
        "i64": DType.I64,
        "f16": DType.F16,
        "half": DType.F16,
        "bf16": DType.BF16,
        "f32": DType.F32,
        "float": DType.F32,
        "f64": DType.F64,
        "double": DType.F64,
        "bool_": DType.BOOL,
        "short": DType.I16,
        "int": DType.I32,
        "long": DType.I64,
    }
)

STATS_KEYS = tuple(name for name, _ in _lib.StatsStruct._fields_ if name != "struct_size")


def version():
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _lib.lib().ferry_version().decode()


def version_number():
    """The loaded library's MAJOR * 10000 + MINOR * 100 + PATCH."""
    return int(_lib.lib().ferry_version_number())


def _stream_address(stream):
    """A stream argument as a C pointer: None, an int, a torch stream (.cuda_stream) or a
    cupy-like stream (.ptr)."""
    if stream is None:
        return None
    if isinstance(stream, int):
        return stream or None
    for attr in ("cuda_stream", "ptr", "handle"):
        value = getattr(stream, attr, None)
        if isinstance(value, int):
            return value or None
    raise InvalidArgumentError(f"ferry: not a stream: {stream!r}")


# Runtimes collected while DLPack views of their memory were still alive in a consumer
# (a torch tensor outlives the view it was made from): each is destroyed once its last
# view is freed, checked whenever a runtime is made or closed, and at exit.
_orphans = []
_orphans_lock = threading.Lock()


def _char_buffer(data):
    """A ctypes char array over a bytes-like object's bytes (a copy when it is read-only),
    and its length."""
    view = memoryview(data).cast("B")
    n = view.nbytes
    if view.readonly:
        return (ctypes.c_char * n).from_buffer_copy(view), n
    return (ctypes.c_char * n).from_buffer(view), n


def _destroy_orphans():
    with _orphans_lock:
        if not _orphans:
            return
        lib = _lib.lib()
        alive = []
        for ptr in _orphans:
            if _dlpack.live_capsules(ptr) > 0:
                alive.append(ptr)
            else:
                lib.ferry_destroy(ptr)  # nothing to report to: its owner is gone
        _orphans[:] = alive


atexit.register(_destroy_orphans)


class Runtime:
    """One ferry runtime: ferry_create on construction, ferry_destroy on close().

    vram_budget: bytes, or a string such as "8GiB". The other keywords are the fields of
    ferry_config (backend: "auto", "cuda", "sim" or a Backend; pinned_cap: bytes or a
    string, for pinned_cap_bytes, which is also accepted under its C name; host_share: the
    name of a host store shared with other processes, host_share_timeout: seconds plan()
    waits for its loader; compress: stream bf16/f16 weights compressed, decoded on the
    device); unset ones keep the library's defaults, and the FERRY_*
    environment variables still override them."""

    def __init__(
        self,
        vram_budget,
        *,
        backend=None,
        device=None,
        slots_per_class=None,
        synchronous=None,
        name=None,
        sim_h2d_gbps=None,
        sim_d2h_gbps=None,
        sim_latency_us=None,
        sim_chaos=None,
        sim_seed=None,
        verify=None,
        pinned_cap=None,
        pageable_fallback=None,
        pinned_cap_bytes=None,
        host_share=None,
        host_share_timeout=None,
        compress=None,
    ):
        self._ptr = None
        self._share_progress = None  # the ShareProgressFn the library may call, kept alive
        self._pin_progress = None  # the _PinProgress the library may call, kept alive
        self._lib = _lib.lib()
        _destroy_orphans()
        cfg = _lib.ConfigStruct()
        self._lib.ferry_config_init(ctypes.byref(cfg))
        cfg.vram_budget = parse_bytes(vram_budget)
        if backend is not None:
            if isinstance(backend, str):
                try:
                    backend = Backend[backend.upper()]
                except KeyError:
                    raise InvalidArgumentError(
                        f"ferry: backend must be auto, cuda or sim, not {backend!r}"
                    ) from None
            cfg.backend = int(backend)
        if device is not None:
            cfg.device = int(device)
        if slots_per_class is not None:
            cfg.slots_per_class = int(slots_per_class)
        if synchronous is not None:
            cfg.synchronous = int(bool(synchronous))
        if name is not None:
            cfg.name = str(name).encode()
        if sim_h2d_gbps is not None:
            cfg.sim_h2d_gbps = float(sim_h2d_gbps)
        if sim_d2h_gbps is not None:
            cfg.sim_d2h_gbps = float(sim_d2h_gbps)
        if sim_latency_us is not None:
            cfg.sim_latency_us = float(sim_latency_us)
        if sim_chaos is not None:
            cfg.sim_chaos = int(bool(sim_chaos))
        if sim_seed is not None:
            cfg.sim_seed = int(sim_seed)
        if verify is not None:
            cfg.verify = int(bool(verify))
        if pinned_cap is not None and pinned_cap_bytes is not None:
            raise InvalidArgumentError("ferry: give pinned_cap or pinned_cap_bytes, not both")
        if pinned_cap_bytes is not None:
            pinned_cap = pinned_cap_bytes
        if pinned_cap is not None:
            cfg.pinned_cap_bytes = parse_bytes(pinned_cap)
        if pageable_fallback is not None:
            cfg.pageable_fallback = int(bool(pageable_fallback))
        if host_share is not None:
            cfg.host_share = str(host_share).encode()
        if host_share_timeout is not None:
            ms = int(float(host_share_timeout) * 1000)
            if not 1 <= ms < 2**32:
                raise InvalidArgumentError(
                    f"ferry: host_share_timeout must be 0.001 s .. 49 days, not {host_share_timeout!r}")
            cfg.host_share_timeout_ms = ms
        if compress is not None:
            cfg.compress = int(bool(compress))
        ptr = ctypes.c_void_p()
        check(self._lib.ferry_create(ctypes.byref(cfg), ctypes.byref(ptr)))
        self._ptr = ptr
        self.name = cfg.name.decode() if cfg.name else "ferry"
        self.device = int(cfg.device)
        self.groups = []
        self._group_names = {}
        self.backend = Backend(self.stats()["backend"])

    # --- lifecycle -------------------------------------------------------------------

    @property
    def closed(self):
        return self._ptr is None

    def _handle(self):
        if self._ptr is None:
            raise ClosedError(f"ferry: runtime '{self.name}' is closed")
        return self._ptr

    def close(self):
        """ferry_destroy: waits for in-flight work, writes back dirty mutable tensors,
        frees everything. Idempotent. Views handed out before are dangling after it.
        (A runtime collected without close() waits for its last DLPack view instead.)"""
        if self._ptr is None:
            return
        ptr, self._ptr = self._ptr, None
        try:
            check(self._lib.ferry_destroy(ptr))
        finally:
            self._pin_progress = None
            _destroy_orphans()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            if self._ptr is not None and _dlpack.live_capsules(self._ptr) > 0:
                with _orphans_lock:  # a consumer's tensor still reads its memory
                    _orphans.append(self._ptr)
                self._ptr = None
                return
            self.close()
        except Exception:  # noqa: BLE001 - nothing to report to at collection time
            pass

    def __repr__(self):
        state = "closed" if self.closed else self.phase.name.lower()
        return f"<ferry.Runtime '{self.name}' {self.backend.name.lower()} {state}>"

    @property
    def phase(self):
        out = ctypes.c_int()
        check(self._lib.ferry_phase_get(self._handle(), ctypes.byref(out)))
        return Phase(out.value)

    def define_group(self, name):
        """DEFINE. A new group (names unique per runtime, 1..255 bytes)."""
        out = _lib.GroupHandle()
        check(self._lib.ferry_group_define(self._handle(), name.encode(), ctypes.byref(out)))
        group = Group(self, name, out)
        self.groups.append(group)
        self._group_names[name] = group
        return group

    def group(self, name):
        """The group defined under name (KeyError when none)."""
        return self._group_names[name]

    def declare_schedule(self, order):
        """DEFINE or PLANNED. The order groups are acquired in one pass."""
        order = list(order)
        array = (_lib.GroupHandle * max(len(order), 1))(*[g._h for g in order])
        check(self._lib.ferry_schedule_declare(self._handle(), array, len(order)))

    def set_pin_progress(self, fn):
        """DEFINE. fn(pinned_bytes, pageable_bytes, total_bytes) is called by plan(), on
        its thread, after each chunk of the host store is pinned (FERRY_PIN_CHUNK bytes
        or one image), and once more for what stays pageable past the pinned cap; the
        last call has pinned_bytes + pageable_bytes == total_bytes. None clears it. fn
        must not call this runtime.

        An exception raised by fn is not lost: fn is not called again during that plan,
        pinning goes on (the library cannot stop halfway) and plan() raises the exception
        once the runtime is planned (unless planning failed: then the FerryError is
        raised, with fn's exception as its __context__)."""
        handle = self._handle()
        if fn is None:
            check(self._lib.ferry_pin_progress_set(handle, _lib.PinProgressFn(), None))  # NULL
            self._pin_progress = None
            return
        if not callable(fn):
            raise InvalidArgumentError(f"ferry: pin progress must be callable, not {fn!r}")
        progress = _PinProgress(fn)
        check(self._lib.ferry_pin_progress_set(handle, progress.c_fn, None))
        self._pin_progress = progress

    @property
    def host_share_role(self):
        """PLANNED or SEALED: "none" (a private host store), "loader" (this runtime
        loads the shared store: first of its name, or taking over a dead loader's load)
        or "attached" (its bytes are another process's: loading is a no-op)."""
        out = ctypes.c_int()
        check(self._lib.ferry_host_share_role_get(self._handle(), ctypes.byref(out)))
        return ("none", "loader", "attached")[out.value]

    def set_host_share_progress(self, fn):
        """DEFINE. fn(loaded_bytes, total_bytes) is called by plan(), on its thread, about
        every 100 ms while it waits for another process to load the shared host store.
        None clears it. fn must not call into this runtime."""
        if fn is None:
            check(self._lib.ferry_host_share_progress_set(
                self._handle(), _lib.ShareProgressFn(), None))
            self._share_progress = None
            return

        def call(user, loaded, total):
            try:
                fn(int(loaded), int(total))
            except BaseException:  # noqa: BLE001 - never into C; progress is best effort
                pass

        c_fn = _lib.ShareProgressFn(call)
        check(self._lib.ferry_host_share_progress_set(self._handle(), c_fn, None))
        self._share_progress = c_fn

    def plan(self):
        """DEFINE -> PLANNED: layout, residency, pinned arena, VRAM slab. With
        host_share=, joins the shared host store: the first runtime of that name loads it,
        the others wait here until it is sealed (host_share_timeout seconds at most)."""
        status = self._lib.ferry_plan(self._handle())
        progress = self._pin_progress
        error = progress.take_error() if progress is not None else None
        if error is not None:
            try:
                raise error
            except BaseException:
                check(status)  # a failed plan wins, with fn's exception as its context
                raise
        check(status)

    def seal(self):
        """PLANNED -> SEALED: immutable images read-only, resident groups onloaded."""
        check(self._lib.ferry_seal(self._handle()))

    def acquire(self, group, stream=None):
        group.acquire(stream)

    def release(self, group, stream=None):
        group.release(stream)

    def synchronize(self):
        """Writes back dirty mutable tensors of groups not acquired and waits for ferry's
        copies; host bytes of mutable tensors are current afterwards."""
        check(self._lib.ferry_synchronize(self._handle()))

    def stats(self):
        """ferry_stats as a dict with the C struct's field names (struct_size left out)."""
        s = _lib.StatsStruct()
        s.struct_size = ctypes.sizeof(_lib.StatsStruct)
        check(self._lib.ferry_stats_get(self._handle(), ctypes.byref(s)))
        return {key: int(getattr(s, key)) for key in STATS_KEYS}

    # --- weights files (safetensors) --------------------------------------------------

    def define_from(self, weights, block_prefixes, blocks_per_group=1, dtype=None):
        """DEFINE. ferry_weights_define: groups and tensors from a ferry.Weights. A tensor
        named "<prefix><N>.<rest>" (N decimal, prefix one of block_prefixes, e.g.
        "transformer_blocks.") goes to the group "<prefix><N>", or with
        blocks_per_group > 1 to "<prefix><first>-<last>" (blocks N and M share a group
        when N // blocks_per_group equals M // blocks_per_group); every other tensor to a
        group "root", which prefers residency. Groups come root first, then by prefix and
        block number; tensors by name, immutable, of the file's shape and of `dtype`
        (None: the file's; "float32", "bfloat16" or "float16": float tensors are
        converted by load()). Tensors of no bytes are left out. Nothing is defined when a
        group name is taken (DuplicateNameError). Returns the new groups, whose handles
        come from ferry_groups_list and ferry_group_tensors."""
        if isinstance(block_prefixes, str):
            block_prefixes = [block_prefixes]
        prefixes = [str(p).encode() for p in block_prefixes]
        if isinstance(blocks_per_group, bool) or not isinstance(blocks_per_group, int) \
                or blocks_per_group < 1:
            raise InvalidArgumentError(
                f"ferry: blocks_per_group must be an int >= 1, not {blocks_per_group!r}")
        want = DType.of(dtype)
        handle = self._handle()
        before = len(self._group_handles())
        array = (ctypes.c_char_p * max(len(prefixes), 1))(*prefixes)
        check(self._lib.ferry_weights_define(handle, weights._handle(), array, len(prefixes),
                                             blocks_per_group, int(want)))
        out = []
        for h in self._group_handles()[before:]:
            group = Group(self, _name_of(self._lib.ferry_group_name, handle, h), h)
            self.groups.append(group)
            self._group_names[group.name] = group
            count = ctypes.c_size_t()
            check(self._lib.ferry_group_tensors(handle, h, None, 0, ctypes.byref(count)))
            tensors = (_lib.TensorHandle * max(count.value, 1))()
            check(self._lib.ferry_group_tensors(handle, h, tensors, count.value,
                                                ctypes.byref(count)))
            for th in tensors[:count.value]:
                name = _name_of(self._lib.ferry_tensor_name, handle, th)
                t = weights[name]
                dt = want if want != DType.UNKNOWN and t.ferry_dtype in _FLOATS else t.ferry_dtype
                nbytes = t.nbytes if dt == t.ferry_dtype else math.prod(t.shape) * dt.itemsize
                tensor = Tensor(group, name, _lib.TensorHandle(th.id), nbytes, dt, t.shape, False)
                group.tensors.append(tensor)
                group._tensor_names[name] = tensor
            out.append(group)
        return out

    def _group_handles(self):
        """ferry_groups_list: every group's handle, in definition order."""
        handle = self._handle()
        count = ctypes.c_size_t()
        check(self._lib.ferry_groups_list(handle, None, 0, ctypes.byref(count)))
        out = (_lib.GroupHandle * max(count.value, 1))()
        check(self._lib.ferry_groups_list(handle, out, count.value, ctypes.byref(count)))
        return [_lib.GroupHandle(g.id) for g in out[:count.value]]

    def load(self, weights, tensors=None, name_prefix="", allow_unused=False,
             convert_dtype=True, threads=0, direct=False, disk_tier=True, progress=None):
        """PLANNED. ferry_weights_load: reads the tensors (None: every defined one) from
        a ferry.Weights into the host store, each from the file tensor of its name with
        name_prefix prepended. Returns a LoadReport.

        Before a byte is read every tensor is matched: one WeightsMismatchError lists
        each one missing from the files, of another shape or dtype, and (without
        allow_unused) each tensor of the files left unread. convert_dtype: float tensors
        (F32, BF16, F16) defined with another float dtype are converted while read.
        threads: parallel readers (0: up to 4). direct: O_DIRECT where possible.
        disk_tier: with pageable_fallback and a pinned cap below the model, immutable
        tensors past the pinned part stay in the files and are read at each onload.
        progress: None (a tqdm bar when stderr is a terminal), True, False, or a callable
        f(bytes_done, bytes_total) called on this thread.

        A failed read (WeightsIOError, FileChangedError) leaves the runtime PLANNED; seal()
        refuses it until a load succeeds."""
        from . import weights as _weights

        return _weights.load(self, weights, tensors=tensors, name_prefix=name_prefix,
                             allow_unused=allow_unused, convert_dtype=convert_dtype,
                             threads=threads, direct=direct, disk_tier=disk_tier,
                             progress=progress)

    # --- trace (Chrome trace-event JSON: Perfetto, chrome://tracing) --------------------

    def trace_start(self, capacity=0):
        """ferry_trace_start: records ferry's timeline into a ring of `capacity` events
        (0: the library's default), discarding any earlier trace."""
        check(self._lib.ferry_trace_start(self._handle(), int(capacity)))

    def trace_stop(self):
        """ferry_trace_stop: stops recording; what was recorded stays for trace_dump."""
        check(self._lib.ferry_trace_stop(self._handle()))

    def trace_dump(self, path):
        """ferry_trace_dump: writes the events recorded so far to `path` as JSON. Call
        synchronize() (and let compute finish) first to include work in flight."""
        check(self._lib.ferry_trace_dump(self._handle(), os.fsencode(path)))


_FLOATS = (DType.F16, DType.BF16, DType.F32)


def _name_of(fn, runtime, handle):
    """A group's or tensor's name through ferry_group_name / ferry_tensor_name."""
    out = ctypes.c_char_p()
    check(fn(runtime, handle, ctypes.byref(out)))
    return out.value.decode()


class _PinProgress:
    """A Python callable behind a ferry_pin_progress_fn. The C function object lives as
    long as this, which the Runtime keeps until the callback is replaced or destroyed."""

    def __init__(self, fn):
        self.fn = fn
        self.error = None
        self.c_fn = _lib.PinProgressFn(self._call)

    def _call(self, user, pinned_bytes, pageable_bytes, total_bytes):
        # An exception must not escape into C (ctypes would print and drop it): keep the
        # first one for plan() to raise, and stop calling fn.
        if self.error is not None:
            return
        try:
            self.fn(int(pinned_bytes), int(pageable_bytes), int(total_bytes))
        except BaseException as exc:  # noqa: BLE001 - re-raised by Runtime.plan
            self.error = exc

    def take_error(self):
        error, self.error = self.error, None
        return error


class Group:
    """A ferry_group of a Runtime. Made by Runtime.define_group()."""

    def __init__(self, runtime, name, handle):
        self.runtime = runtime
        self.name = name
        self._h = handle
        self.tensors = []
        self._tensor_names = {}

    def __repr__(self):
        return f"<ferry.Group '{self.name}' ({len(self.tensors)} tensors)>"

    @property
    def id(self):
        return int(self._h.id)

    def tensor(self, name):
        return self._tensor_names[name]

    def prefer_resident(self):
        """DEFINE. Asks the planner to keep this group resident before any other: for a
        group held while others are acquired. When the budget cannot hold the preferred
        groups and the streaming slots, they are planned like the others."""
        rt = self.runtime
        check(rt._lib.ferry_group_prefer_resident(rt._handle(), self._h))

    def declare_compute(self, nanoseconds):
        """DEFINE or PLANNED. The device time one acquire of this group computes for, for
        the compute-aware planner (declared for every group before plan, it is used at
        once; otherwise ferry times the first pass and re-plans once)."""
        if isinstance(nanoseconds, bool) or not isinstance(nanoseconds, int) or nanoseconds < 0:
            raise InvalidArgumentError(
                f"declare_compute: nanoseconds must be an int >= 0, not {nanoseconds!r}")
        rt = self.runtime
        check(rt._lib.ferry_group_compute_declare(rt._handle(), self._h, nanoseconds))

    def define_tensor(self, name, nbytes=None, *, dtype=None, shape=None, mutable=False):
        """DEFINE. A tensor of this group. Give nbytes, or dtype and shape (or all three:
        the library checks they agree). mutable: may change on the device; written back
        on eviction, synchronize and destroy."""
        dt = DType.of(dtype)
        shape = tuple(int(d) for d in shape) if shape is not None else ()
        if len(shape) > MAX_DIMS:
            raise InvalidArgumentError(
                f"ferry: tensor '{name}' has {len(shape)} dims, at most {MAX_DIMS}"
            )
        if nbytes is None:
            if dt == DType.UNKNOWN:
                raise InvalidArgumentError(
                    f"ferry: tensor '{name}': give nbytes, or a dtype and a shape"
                )
            nbytes = math.prod(shape) * dt.itemsize
        nbytes = int(nbytes)
        c_shape = (ctypes.c_int64 * max(len(shape), 1))(*shape)
        out = _lib.TensorHandle()
        rt = self.runtime
        check(
            rt._lib.ferry_tensor_define(
                rt._handle(),
                self._h,
                name.encode(),
                nbytes,
                int(dt),
                len(shape),
                c_shape if shape else None,
                TENSOR_MUTABLE if mutable else 0,
                ctypes.byref(out),
            )
        )
        tensor = Tensor(self, name, out, nbytes, dt, shape, bool(mutable))
        self.tensors.append(tensor)
        self._tensor_names[name] = tensor
        return tensor

    def acquire(self, stream=None):
        """SEALED. Makes the bytes available to work on `stream` (sim: None waits until
        they are in place; cuda: a cudaStream_t, a torch or cupy stream, None = legacy
        default stream)."""
        rt = self.runtime
        check(rt._lib.ferry_acquire(rt._handle(), self._h, _stream_address(stream)))

    def release(self, stream=None):
        """SEALED. Ends one holder's use once the work on `stream` so far is done."""
        rt = self.runtime
        check(rt._lib.ferry_release(rt._handle(), self._h, _stream_address(stream)))

    @contextlib.contextmanager
    def acquired(self, stream=None):
        """acquire() on entry, release() on exit."""
        self.acquire(stream)
        try:
            yield self
        finally:
            self.release(stream)

    def info(self):
        """After plan: {"resident": bool, "size_class": int (-1 if resident),
        "image_bytes": int, "resident_bytes": int}. resident_bytes stays on the device
        for good: image_bytes when resident, the head of a group the planner split (its
        tail streams), 0 when streamed whole."""
        resident = ctypes.c_int32()
        size_class = ctypes.c_int32()
        image_bytes = ctypes.c_uint64()
        rt = self.runtime
        check(
            rt._lib.ferry_group_info(
                rt._handle(),
                self._h,
                ctypes.byref(resident),
                ctypes.byref(size_class),
                ctypes.byref(image_bytes),
            )
        )
        resident_bytes = ctypes.c_uint64()
        check(
            rt._lib.ferry_group_resident_bytes(rt._handle(), self._h, ctypes.byref(resident_bytes))
        )
        return {
            "resident": bool(resident.value),
            "size_class": int(size_class.value),
            "image_bytes": int(image_bytes.value),
            "resident_bytes": int(resident_bytes.value),
        }


class Tensor:
    """A ferry_tensor of a Group. Made by Group.define_tensor()."""

    def __init__(self, group, name, handle, nbytes, dtype, shape, mutable):
        self.group = group
        self.name = name
        self._h = handle
        self.nbytes = nbytes
        self.dtype = dtype
        self.shape = shape
        self.mutable = mutable

    def __repr__(self):
        kind = "mutable" if self.mutable else "immutable"
        return (
            f"<ferry.Tensor '{self.group.name}/{self.name}' {self.dtype.name.lower()} "
            f"{list(self.shape)} {self.nbytes} B {kind}>"
        )

    @property
    def runtime(self):
        return self.group.runtime

    def _view_layout(self):
        """(shape, array dtype name) of views: raw bytes when the dtype is unknown."""
        if self.dtype == DType.UNKNOWN:
            return (self.nbytes,), "uint8"
        return self.shape, self.dtype.array_name

    def host_ptr(self):
        """PLANNED (writable) or SEALED (immutable: read-only, a write faults; mutable:
        current after Runtime.synchronize()). The address as an int."""
        out = ctypes.c_void_p()
        rt = self.runtime
        check(rt._lib.ferry_tensor_host_ptr(rt._handle(), self._h, ctypes.byref(out)))
        return int(out.value or 0)

    def device_ptr(self):
        """SEALED, while the group is acquired. The device address as an int."""
        out = ctypes.c_void_p()
        rt = self.runtime
        check(rt._lib.ferry_tensor_device_ptr(rt._handle(), self._h, ctypes.byref(out)))
        return int(out.value or 0)

    def copy_in(self, data, offset=0):
        """PLANNED. Copies a bytes-like object (bytes, bytearray, memoryview, a numpy
        array, ...) into the host bytes at offset."""
        buf, n = _char_buffer(data)
        self.copy_in_address(ctypes.addressof(buf), n, offset)

    def copy_in_address(self, address, nbytes, offset=0):
        """PLANNED. Copies nbytes from a raw address into the host bytes at offset."""
        rt = self.runtime
        check(
            rt._lib.ferry_tensor_copy_in(
                rt._handle(), self._h, int(offset), int(address) or None, int(nbytes)
            )
        )

    def update(self, data, offset=0):
        """SEALED, the group not acquired. ferry_tensor_update: new bytes (a bytes-like
        object) for an immutable tensor at offset, without a reload and without a byte
        copied device-to-host. Resident and split copies are rewritten in stream order, a
        streamed group's slot is emptied; the next acquire sees the new bytes.
        GroupBusyError while the group is acquired, WrongPhaseError before seal (use
        copy_in), InvalidArgumentError for a mutable tensor, OutOfRangeError past the end."""
        buf, n = _char_buffer(data)
        self.update_address(ctypes.addressof(buf), n, offset)

    def update_address(self, address, nbytes, offset=0):
        """SEALED. ferry_tensor_update from a raw address (a CPU torch tensor's data_ptr())."""
        rt = self.runtime
        check(
            rt._lib.ferry_tensor_update(
                rt._handle(), self._h, int(offset), int(address) or None, int(nbytes)
            )
        )

    def copy_out(self, dst, offset=0):
        """PLANNED or SEALED. Fills the writable bytes-like dst (bytearray, memoryview,
        a numpy array, ...) with the tensor's bytes from offset: from the host store, or
        for a tensor on the disk tier from its file. A mutable tensor's bytes are current
        after Runtime.synchronize()."""
        view = memoryview(dst).cast("B")
        if view.readonly:
            raise InvalidArgumentError("ferry: copy_out needs a writable buffer")
        buf = (ctypes.c_char * view.nbytes).from_buffer(view)
        self.copy_out_address(ctypes.addressof(buf), view.nbytes, offset)
        return dst

    def copy_out_address(self, address, nbytes, offset=0):
        """PLANNED or SEALED. ferry_tensor_copy_out: nbytes from offset to a raw address."""
        rt = self.runtime
        check(
            rt._lib.ferry_tensor_copy_out(
                rt._handle(), self._h, int(offset), int(address) or None, int(nbytes)
            )
        )

    def read(self, offset=0, nbytes=None):
        """The tensor's bytes (from offset, nbytes of them, default to the end) as a bytes
        object, through copy_out: from the host store or the disk tier."""
        if nbytes is None:
            nbytes = self.nbytes - int(offset)
        buf = bytearray(max(int(nbytes), 0))
        if nbytes:
            self.copy_out(buf, offset)
        return bytes(buf)

    def read_host(self):
        """The host bytes, copied into a bytes object (PLANNED or SEALED; a mutable
        tensor's bytes are current after Runtime.synchronize())."""
        return ctypes.string_at(self.host_ptr(), self.nbytes)

    def host_view(self):
        """A view of the host bytes (__array_interface__ and DLPack, CPU). Read-only
        after seal unless the tensor is mutable: writing through it faults."""
        readonly = (not self.mutable) and self.runtime.phase == Phase.SEALED
        shape, dtype = self._view_layout()
        return HostView(self.host_ptr(), shape, dtype, readonly, owner=self)

    def device_view(self):
        """A view of the device bytes, valid while the group stays acquired: DLPack
        always; __cuda_array_interface__ on cuda, __array_interface__ on sim (where the
        "device" is host memory)."""
        shape, dtype = self._view_layout()
        ptr = self.device_ptr()
        rt = self.runtime
        if rt.backend == Backend.CUDA:
            return CudaView(ptr, shape, dtype, rt.device, owner=self)
        return HostView(ptr, shape, dtype, readonly=False, owner=self)


class _View:
    """Raw C-contiguous memory seen as an array. owner is kept alive by the view (not by
    the tensors a DLPack consumer makes from it: they are valid while the memory is)."""

    _device_type = _dlpack.DeviceType.CPU

    def __init__(self, ptr, shape, dtype, device_id=0, owner=None):
        self.ptr = ptr
        self.shape = tuple(shape)
        self.dtype = dtype
        self.device_id = device_id
        self.owner = owner

    @property
    def nbytes(self):
        return math.prod(self.shape) * _dlpack.itemsize(self.dtype)

    def __dlpack_device__(self):
        return (int(self._device_type), int(self.device_id))

    def __dlpack__(self, stream=None):
        # The data is ready for work on the stream the group was acquired on; a consumer
        # on another stream must order itself after that stream.
        del stream
        return _dlpack.make_capsule(
            self.ptr, self.shape, self.dtype, self._device_type, self.device_id,
            runtime=getattr(self.owner, "runtime", None),
        )

    def __repr__(self):
        return (
            f"<ferry.{type(self).__name__} 0x{self.ptr:x} {self.dtype} {list(self.shape)}>"
        )


class HostView(_View):
    """Memory the CPU can read: the host store, or sim's emulated device memory."""

    def __init__(self, ptr, shape, dtype, readonly=False, owner=None):
        super().__init__(ptr, shape, dtype, 0, owner)
        self.readonly = readonly

    @property
    def __array_interface__(self):
        return _dlpack.array_interface(self.ptr, self.shape, self.dtype, self.readonly)

    def tobytes(self):
        return ctypes.string_at(self.ptr, self.nbytes)


class CudaView(_View):
    """Memory on a CUDA device."""

    _device_type = _dlpack.DeviceType.CUDA

    def __init__(self, ptr, shape, dtype, device_id=0, owner=None):
        super().__init__(ptr, shape, dtype, device_id, owner)

    @property
    def __cuda_array_interface__(self):
        out = _dlpack.array_interface(self.ptr, self.shape, self.dtype, False, version=3)
        out["stream"] = None  # ordered by the stream the group was acquired on
        return out

