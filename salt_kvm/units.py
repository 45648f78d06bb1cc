"""Sizes and durations, parsed in one place.

Sizes use binary units as libvirt and qemu-img do (``1G`` = 1024**3 bytes);
durations accept ``90s``, ``30m``, ``12h``, ``7d``, ``2w``.
"""

import math
import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
    "p": 1024**5,
    "pb": 1024**5,
    "pib": 1024**5,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")

#: sizes above this are refused as typos (1 EiB)
MAX_SIZE = 1024**6
#: durations above this are refused as typos (100 years)
MAX_DURATION = 100 * 365 * 86400


def _shown(value):
    """``repr(value)`` cut for an error message (a pillar value may be huge)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return "a number that large"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_size(value):
    """Return ``value`` (``512M``, ``20G``, ``1.5T``, ``10737418240``) in bytes.

    Raises ``ValueError`` with a message naming the value when it is not a size.
    """
    if isinstance(value, bool):
        raise ValueError(f"{_shown(value)} is not a size")
    if isinstance(value, int):
        if value < 0 or value > MAX_SIZE:
            raise ValueError(f"{_shown(value)} is not a size")
        return value
    if isinstance(value, float):
        if value < 0 or value != value or value > MAX_SIZE:
            raise ValueError(f"{_shown(value)} is not a size")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"{_shown(value)} is not a size")
    match = _SIZE_RE.match(value)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{_shown(value)} is not a size")
    number, unit = match.groups()
    scaled = float(number) * _SIZE_UNITS[unit.lower()]
    if not math.isfinite(scaled) or scaled > MAX_SIZE:
        raise ValueError(f"{_shown(value)} is not a size (too large)")
    result = int(scaled)
    if result > MAX_SIZE:
        raise ValueError(f"{_shown(value)} is not a size (too large)")
    return result


def format_size(num_bytes):
    """``21474836480`` -> ``'20G'``; exact binary units when they divide evenly."""
    num_bytes = int(num_bytes)
    for unit, factor in (("P", 1024**5), ("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if num_bytes >= factor:
            if num_bytes % factor == 0:
                return f"{num_bytes // factor}{unit}"
            return f"{num_bytes / factor:.1f}{unit}"
    return str(num_bytes)


def parse_duration(value):
    """Return ``value`` (``30s``, ``30m``, ``12h``, ``7d``, ``2w`` or seconds) in seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{_shown(value)} is not a duration")
    if isinstance(value, (int, float)):
        if value < 0 or value != value or value > MAX_DURATION:
            raise ValueError(f"{_shown(value)} is not a duration (0 to 100 years)")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{_shown(value)} is not a duration")
    match = _DURATION_RE.match(value)
    if not match:
        raise ValueError(f"{_shown(value)} is not a duration")
    number, unit = match.groups()
    seconds = float(number) * _DURATION_UNITS[unit or "s"]
    if not seconds <= MAX_DURATION:  # also inf
        raise ValueError(f"{_shown(value)} is not a duration (0 to 100 years)")
    return seconds


def format_duration(seconds):
    """``86400`` -> ``'1d'``; the largest unit that divides evenly."""
    seconds = float(seconds)
    for unit in ("w", "d", "h", "m"):
        factor = _DURATION_UNITS[unit]
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:g}s"
