"""Progress bars for long loads, in bytes, on stderr.

progress=None (the default) shows a tqdm bar only when tqdm is installed and stderr is a
terminal: tqdm's own ``disable=None``, which diffusers and transformers rely on too, so
logs and pipes stay clean. progress=True always shows one (plain text lines when tqdm is
missing), progress=False never does.
"""

import sys
import time

from .units import format_bytes

__all__ = ["bar", "PinBar"]

try:
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # tqdm is optional
    _tqdm = None


def bar(progress, total, desc):
    """A bar over total bytes with update(n) and close(), or None when none is shown."""
    if progress is False or (progress is None and _tqdm is None):
        return None
    if _tqdm is None:
        return _TextBar(total, desc)
    return _tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                 file=sys.stderr, disable=None if progress is None else False)


class _TextBar:
    """What progress=True shows without tqdm: one line per second at most, then a last."""

    def __init__(self, total, desc, interval=1.0):
        self.total = total
        self.desc = desc
        self.n = 0
        self._interval = interval
        self._shown = None  # when the last line was written
        self._shown_n = None  # and what it said

    def update(self, n):
        self.n += n
        now = time.monotonic()
        if self._shown is None or now - self._shown >= self._interval:
            self._shown = now
            self._write()

    def close(self):
        if self._shown_n != self.n:
            self._write()

    def _write(self):
        self._shown_n = self.n
        share = 100.0 * self.n / self.total if self.total else 100.0
        sys.stderr.write(f"{self.desc}: {format_bytes(self.n)} of {format_bytes(self.total)}"
                         f" ({share:.0f}%)\n")
        sys.stderr.flush()


class PinBar:
    """A Runtime.set_pin_progress callback that drives a bar, made at the first call (the
    total is known then)."""

    def __init__(self, progress, desc):
        self._progress = progress
        self._desc = desc
        self._started = False
        self._bar = None
        self._done = 0

    def __call__(self, pinned_bytes, pageable_bytes, total_bytes):
        if not self._started:
            self._started = True
            self._bar = bar(self._progress, total_bytes, self._desc)
        if self._bar is not None:
            done = pinned_bytes + pageable_bytes
            self._bar.update(done - self._done)
            self._done = done

    def close(self):
        if self._bar is not None:
            self._bar.close()
