"""Giving freed host memory back to the operating system.

glibc's malloc keeps freed memory in its heap for reuse. A tensor of a few MiB is not
always mmap'd of its own: once a process has freed such an mmap'd block, glibc raises its
mmap threshold (up to 32 MiB) and serves later blocks of that size from the heap, which
it shrinks only from the top. A model built after some allocation churn (loading a
checkpoint, building another model) thus sits mostly in the heap, and freeing it after
offload leaves the resident set where it was: two copies of the model instead of one.
``malloc_trim(0)`` returns every free page of every arena (madvise, not only the top).

Only glibc has malloc_trim; elsewhere (musl, macOS, Windows) trim() does nothing.
"""

import ctypes
import sys

__all__ = ["trim"]


def _find_malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: the C library in use
    except OSError:
        return None
    # gnu_get_libc_version tells glibc apart from musl, which has no malloc_trim, and
    # from a libc that only happens to export a function of that name.
    if not hasattr(libc, "gnu_get_libc_version"):
        return None
    fn = getattr(libc, "malloc_trim", None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_malloc_trim = _find_malloc_trim()


def available():
    """Whether trim() can give memory back here (glibc)."""
    return _malloc_trim is not None


def trim():
    """Returns the C heap's free pages to the OS. True when some were released."""
    if _malloc_trim is None:
        return False
    return bool(_malloc_trim(0))
