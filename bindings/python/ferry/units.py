"""Byte sizes written the way people write them: 8_000_000, "8GiB", "512 MB", "1.5G"."""

import re

__all__ = ["parse_bytes", "format_bytes"]

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    # bare letters are binary, as in torch and most tools
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
}

_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_bytes(value):
    """Bytes as an int from an int, a float, or a string with an optional unit.

    Units: B; kB/MB/GB/TB (powers of 1000); KiB/MiB/GiB/TiB and bare K/M/G/T (powers
    of 1024); case-insensitive. Raises ValueError on anything else or a negative size."""
    if isinstance(value, bool):
        raise ValueError(f"not a byte size: {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        n = int(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        unit = match.group(2).lower() if match else None
        if not match or unit not in _UNITS:
            raise ValueError(
                f"not a byte size: {value!r} (write e.g. 8GiB, 512MB, 1.5G or a number)"
            )
        n = int(float(match.group(1)) * _UNITS[unit])
    else:
        raise ValueError(f"not a byte size: {value!r}")
    if n < 0:
        raise ValueError(f"byte size must not be negative: {value!r}")
    return n


def format_bytes(n):
    """A short human form, e.g. 1.50 GiB."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"
