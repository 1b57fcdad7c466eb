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
