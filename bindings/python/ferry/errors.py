"""Status codes and the exception raised for each.

Every failing ferry call raises the FerryError subclass of its status, carrying the
calling thread's ferry_last_error() message (which names the call, the object and the
cause). The runtime stays usable after any of them.
"""

import enum

from . import _lib

__all__ = [
    "Status",
    "FerryError",
    "InvalidArgumentError",
    "InvalidHandleError",
    "ForeignHandleError",
    "StaleHandleError",
    "WrongPhaseError",
    "InvalidSizeError",
    "SizeTooLargeError",
    "BudgetTooSmallError",
    "DuplicateNameError",
    "NotAcquiredError",
    "NoFreeSlotError",
    "GroupBusyError",
    "EmptyError",
    "OutOfRangeError",
    "OutOfHostMemoryError",
    "OutOfDeviceMemoryError",
    "BackendUnavailableError",
    "DeviceError",
    "InternalError",
    "VerifyFailedError",
    "StreamCapturingError",
    "WeightsIOError",
    "FileTruncatedError",
    "FileFormatError",
    "WeightsMismatchError",
    "FileChangedError",
    "NotInMemoryError",
    "HostShareError",
    "HostShareLayoutError",
    "ClosedError",
    "AlreadyOffloadedError",
    "ModelChangedError",
    "error_class",
    "status_string",
    "check",
]


class Status(enum.IntEnum):
    """ferry_status. Values are pinned by the header; new ones may appear."""

    OK = 0
    INVALID_ARGUMENT = 1
    INVALID_HANDLE = 2
    FOREIGN_HANDLE = 3
    STALE_HANDLE = 4
    WRONG_PHASE = 5
    INVALID_SIZE = 6
    SIZE_TOO_LARGE = 7
    BUDGET_TOO_SMALL = 8
    DUPLICATE_NAME = 9
    NOT_ACQUIRED = 10
    NO_FREE_SLOT = 11
    GROUP_BUSY = 12
    EMPTY = 13
    OUT_OF_RANGE = 14
    OUT_OF_HOST_MEMORY = 15
    OUT_OF_DEVICE_MEMORY = 16
    BACKEND_UNAVAILABLE = 17
    DEVICE = 18
    INTERNAL = 19
    VERIFY_FAILED = 20
    STREAM_CAPTURING = 21
    IO = 22
    FILE_TRUNCATED = 23
    FILE_FORMAT = 24
    WEIGHTS_MISMATCH = 25
    FILE_CHANGED = 26
    NOT_IN_MEMORY = 27
    HOST_SHARE = 28
    HOST_SHARE_LAYOUT = 29


def status_string(status):
    """The library's static description of a status ("ok", "wrong phase", ...)."""
    return _lib.lib().ferry_status_string(int(status)).decode()


class FerryError(Exception):
    """A ferry call failed. ``status`` is the ferry_status (an int; a Status when known),
    ``message`` the library's ferry_last_error() text for the failed call."""

    status = None  # set on each subclass

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.message = message

    @property
    def status_string(self):
        return status_string(self.status) if self.status is not None else ""


class InvalidArgumentError(FerryError, ValueError):
    status = Status.INVALID_ARGUMENT


class InvalidHandleError(FerryError):
    status = Status.INVALID_HANDLE


class ForeignHandleError(FerryError):
    status = Status.FOREIGN_HANDLE


class StaleHandleError(FerryError):
    status = Status.STALE_HANDLE


class WrongPhaseError(FerryError):
    status = Status.WRONG_PHASE


class InvalidSizeError(FerryError, ValueError):
    status = Status.INVALID_SIZE


class SizeTooLargeError(FerryError):
    status = Status.SIZE_TOO_LARGE


class BudgetTooSmallError(FerryError):
    status = Status.BUDGET_TOO_SMALL


class DuplicateNameError(FerryError):
    status = Status.DUPLICATE_NAME


class NotAcquiredError(FerryError):
    status = Status.NOT_ACQUIRED


class NoFreeSlotError(FerryError):
    status = Status.NO_FREE_SLOT


class GroupBusyError(FerryError):
    status = Status.GROUP_BUSY


class EmptyError(FerryError):
    status = Status.EMPTY


class OutOfRangeError(FerryError):
    status = Status.OUT_OF_RANGE


class OutOfHostMemoryError(FerryError, MemoryError):
    status = Status.OUT_OF_HOST_MEMORY


class OutOfDeviceMemoryError(FerryError, MemoryError):
    status = Status.OUT_OF_DEVICE_MEMORY


class BackendUnavailableError(FerryError):
    status = Status.BACKEND_UNAVAILABLE


class DeviceError(FerryError):
    status = Status.DEVICE


class InternalError(FerryError):
    status = Status.INTERNAL


class VerifyFailedError(FerryError):
    """Verify mode found frozen bytes changed on the device (a kernel wrote into them)."""

    status = Status.VERIFY_FAILED


class StreamCapturingError(FerryError):
    """acquire or release on a stream that is capturing a CUDA graph (not supported yet)."""

    status = Status.STREAM_CAPTURING


# Weights files (ferry.Weights, Runtime.load, ferry.torch.offload(weights=...)): the
# message names the file, and the tensor where there is one.


class WeightsIOError(FerryError, OSError):
    """A weights file (or a shard its index names) could not be opened or read; the
    message has the file and errno's text."""

    status = Status.IO


class FileTruncatedError(FerryError):
    """A weights file is shorter than its header says."""

    status = Status.FILE_TRUNCATED


class FileFormatError(FerryError, ValueError):
    """A malformed weights file: header not JSON, offsets out of range or overlapping,
    shape and dtype not the byte range, an unknown dtype, a name twice, ..."""

    status = Status.FILE_FORMAT


class WeightsMismatchError(FerryError, ValueError):
    """The tensors to load and the files disagree. One error lists them all: tensors
    missing from the files, of another shape or dtype, and tensors of the files that
    nothing reads (unless allowed)."""

    status = Status.WEIGHTS_MISMATCH


class FileChangedError(FerryError):
    """A weights file was modified or replaced after it was opened."""

    status = Status.FILE_CHANGED


class NotInMemoryError(FerryError):
    """The tensor's bytes are on the disk tier, not in the host store: read them with
    Tensor.copy_out() / Tensor.read()."""

    status = Status.NOT_IN_MEMORY


class HostShareError(FerryError):
    """The shared host store cannot be used: another user's segment, a corrupt or
    truncated header, its load failed, or the wait for its loader timed out."""

    status = Status.HOST_SHARE


class HostShareLayoutError(FerryError):
    """The shared host store holds another layout of groups and tensors than this
    runtime's; the message names the first difference."""

    status = Status.HOST_SHARE_LAYOUT


# Raised by the Python side, not by the library.


class ClosedError(StaleHandleError):
    """A Runtime, or an offload handle, used after close(). Its handles are stale: the
    library is never called with a destroyed runtime."""


class AlreadyOffloadedError(FerryError):
    """ferry.torch.offload() of a module that is already offloaded."""

    status = Status.INVALID_ARGUMENT


class ModelChangedError(FerryError):
    """A forward through an offloaded model whose tensors changed after offload(): a
    parameter, buffer or module added (LoRA layers, a replaced module) or replaced (a new
    Parameter, a parameter's .data swapped). ferry does not hold those tensors, so they
    would stay on the CPU beside its device views. ``names`` lists their qualified
    names. Close the handle, change the model, and offload it again."""

    status = Status.INVALID_ARGUMENT

    def __init__(self, message, names=()):
        super().__init__(message)
        self.names = list(names)


_BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        InvalidHandleError,
        ForeignHandleError,
        StaleHandleError,
        WrongPhaseError,
        InvalidSizeError,
        SizeTooLargeError,
        BudgetTooSmallError,
        DuplicateNameError,
        NotAcquiredError,
        NoFreeSlotError,
        GroupBusyError,
        EmptyError,
        OutOfRangeError,
        OutOfHostMemoryError,
        OutOfDeviceMemoryError,
        BackendUnavailableError,
        DeviceError,
        InternalError,
        VerifyFailedError,
        StreamCapturingError,
        WeightsIOError,
        FileTruncatedError,
        FileFormatError,
        WeightsMismatchError,
        FileChangedError,
        NotInMemoryError,
        HostShareError,
        HostShareLayoutError,
    )
}


def error_class(status):
    """The FerryError subclass of a status (FerryError itself for an unknown one)."""
    try:
        return _BY_STATUS[Status(status)]
    except ValueError:
        return FerryError


def check(status):
    """Raises the error of a non-zero status, with the thread's last-error message.

    Must be called right after the failing call: the message is per thread and valid
    only until the thread's next ferry call."""
    if status == 0:
        return
    raw = _lib.lib().ferry_last_error()
    message = raw.decode(errors="replace") if raw else ""
    if not message:
        message = status_string(status)
    cls = error_class(status)
    try:
        status = Status(status)
    except ValueError:
        pass
    raise cls(message, status)
