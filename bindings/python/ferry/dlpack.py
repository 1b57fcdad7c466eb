"""DLPack capsules and array-interface dicts over raw memory.

A capsule made here does not own the memory it points at: it holds a small
DLManagedTensor that libferry made (ferry_dlpack_wrap), freed by libferry's deleter when
the consumer (torch, numpy, cupy, ...) calls it. The memory must stay valid as long as
the consumer's tensor is used (for a device view of a ferry tensor: while its group is
acquired).
"""

import ctypes
import enum

from . import _lib
from .errors import check

__all__ = [
    "DeviceType",
    "dlpack_dtype",
    "make_capsule",
    "array_interface",
    "typestr",
]


class DeviceType(enum.IntEnum):
    CPU = 1
    CUDA = 2
    CUDA_HOST = 3


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    pass


_Deleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))
_DLManagedTensor._fields_ = [
    ("dl_tensor", _DLTensor),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", _Deleter),
]

# DLDataTypeCode
_INT, _UINT, _FLOAT, _BFLOAT, _COMPLEX, _BOOL = 0, 1, 2, 4, 5, 6

# dtype name -> (DLPack code, bits, array-interface typestr)
_DTYPES = {
    "uint8": (_UINT, 8, "|u1"),
    "int8": (_INT, 8, "|i1"),
    "int16": (_INT, 16, "<i2"),
    "int32": (_INT, 32, "<i4"),
    "int64": (_INT, 64, "<i8"),
    "float16": (_FLOAT, 16, "<f2"),
    "bfloat16": (_BFLOAT, 16, "<V2"),  # no array-interface type: raw 2-byte records
    "float32": (_FLOAT, 32, "<f4"),
    "float64": (_FLOAT, 64, "<f8"),
    "bool": (_BOOL, 8, "|b1"),
    "complex64": (_COMPLEX, 64, "<c8"),
    "complex128": (_COMPLEX, 128, "<c16"),
}


def dlpack_dtype(name):
    """(code, bits) of a dtype name such as "float32"."""
    code, bits, _ = _DTYPES[name]
    return code, bits


def typestr(name):
    """The __array_interface__ typestr of a dtype name (bfloat16: "<V2", raw bytes)."""
    return _DTYPES[name][2]


def itemsize(name):
    return _DTYPES[name][1] // 8


# --- capsules -------------------------------------------------------------------------
#
# The managed tensor is made by libferry (ferry_dlpack_wrap), and so is its deleter: the
# consumer may call it whenever its last tensor dies, even while the interpreter exits,
# after this module and ctypes' callbacks are gone. Nothing it calls is Python.

_pyapi = ctypes.pythonapi
_pyapi.PyCapsule_New.restype = ctypes.py_object
_pyapi.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_pyapi.PyCapsule_IsValid.restype = ctypes.c_int
_pyapi.PyCapsule_IsValid.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_pyapi.PyCapsule_GetPointer.restype = ctypes.c_void_p
_pyapi.PyCapsule_GetPointer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

_CAPSULE_NAME = b"dltensor"
_CapsuleDestructor = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _capsule_destructor_of():
    """The capsule destructor: a capsule never consumed still bears its name, and its
    managed tensor is freed through its own deleter. A consumed one was renamed
    "used_dltensor" and its consumer calls the deleter.

    Python calls it while the interpreter runs, but a capsule may outlive this module
    at exit: the callback is made immortal (one reference never dropped) and reads no
    module globals."""
    is_valid = _pyapi.PyCapsule_IsValid
    get_pointer = _pyapi.PyCapsule_GetPointer
    name = _CAPSULE_NAME
    cast = ctypes.cast
    managed_ptr = ctypes.POINTER(_DLManagedTensor)

    @_CapsuleDestructor
    def destructor(capsule):
        if is_valid(capsule, name):
            managed = cast(get_pointer(capsule, name), managed_ptr)
            managed.contents.deleter(managed)

    _pyapi.Py_IncRef(ctypes.py_object(destructor))
    return destructor


_capsule_destructor = _capsule_destructor_of()
_capsule_destructor_address = ctypes.cast(_capsule_destructor, ctypes.c_void_p)


def make_capsule(data, shape, dtype, device_type, device_id=0, runtime=None):
    """A "dltensor" PyCapsule of a C-contiguous array at address ``data``.

    dtype is a name such as "float32". The capsule does not own the memory: it must
    stay valid while the consumer's tensor is used. ``runtime``: the ferry.Runtime whose
    memory it views; it counts as one of that runtime's live views until the consumer
    frees it, and a runtime collected meanwhile is destroyed only after its last view."""
    code, bits = dlpack_dtype(dtype)
    shape = tuple(int(d) for d in shape)
    c_shape = (ctypes.c_int64 * max(len(shape), 1))(*shape)
    out = ctypes.c_void_p()
    lib = _lib.lib()
    owner = runtime._handle() if runtime is not None else None
    check(lib.ferry_dlpack_wrap(owner, data or None, int(device_type), int(device_id), code,
                                bits, len(shape), c_shape, ctypes.byref(out)))
    try:
        return _pyapi.PyCapsule_New(out.value, _CAPSULE_NAME, _capsule_destructor_address)
    except BaseException:
        managed = ctypes.cast(out.value, ctypes.POINTER(_DLManagedTensor))
        managed.contents.deleter(managed)
        raise


def array_interface(data, shape, dtype, readonly=False, version=3):
    """An __array_interface__ / __cuda_array_interface__ dict (C-contiguous)."""
    out = {
        "shape": tuple(int(d) for d in shape),
        "typestr": typestr(dtype),
        "data": (int(data or 0), bool(readonly)),
        "strides": None,
        "version": version,
    }
    return out


def live_capsules(handle=None):
    """How many managed tensors libferry made are not deleted yet: for the runtime
    ``handle`` (a ferry_runtime pointer), or in the whole process."""
    out = ctypes.c_uint64()
    check(_lib.lib().ferry_dlpack_live(handle, ctypes.byref(out)))
    return int(out.value)
