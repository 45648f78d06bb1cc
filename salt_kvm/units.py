"""Sizes and durations, parsed in one place.

Sizes read units as ``virsh`` does: ``K``, ``M``, ``G``, ``T``, ``P`` and
``KiB``, ``MiB``, ``GiB``, ``TiB``, ``PiB`` are powers of 1024 (``1G`` =
``1GiB`` = 1024**3 bytes, what qemu-img means too); ``KB``, ``MB``, ``GB``,
``TB``, ``PB`` are powers of 1000 (``1GB`` = 10**9 bytes); ``B`` or no unit is
bytes. Case does not matter. Durations accept ``90s``, ``30m``, ``12h``,
``7d``, ``2w``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Union

_SIZE_UNITS = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgtp", start=1):
    _SIZE_UNITS[_letter] = _SIZE_UNITS[_letter + "ib"] = 1024**_power  # binary, as virsh
    _SIZE_UNITS[_letter + "b"] = 1000**_power  # decimal, as virsh
del _power, _letter

#: what a size may look like, for error messages
SIZE_HINT = (
    "a number of bytes, or with a unit: K, M, G, T (or KiB, MiB, GiB, TiB) are powers of 1024, "
    "KB, MB, GB, TB powers of 1000, as in virsh"
)
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


def parse_size(value: Any) -> int:
    """Return ``value`` (``512M``, ``20G``, ``1.5T``, ``10GB``, ``10737418240``) in bytes.

    ``G``/``GiB`` is 1024**3, ``GB`` 1000**3 (virsh's rule; see the module).
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
        raise ValueError(f"{_shown(value)} is not a size ({SIZE_HINT})")
    number, unit = match.groups()
    scaled = float(number) * _SIZE_UNITS[unit.lower()]
    if not math.isfinite(scaled) or scaled > MAX_SIZE:
        raise ValueError(f"{_shown(value)} is not a size (too large)")
    result = int(scaled)
    if result > MAX_SIZE:
        raise ValueError(f"{_shown(value)} is not a size (too large)")
    return result


def format_size(num_bytes: Union[int, float, str]) -> str:
    """``21474836480`` -> ``'20G'``; exact binary units when they divide evenly."""
    num_bytes = int(num_bytes)
    for unit, factor in (
        ("P", 1024**5),
        ("T", 1024**4),
        ("G", 1024**3),
        ("M", 1024**2),
        ("K", 1024),
    ):
        if num_bytes >= factor:
            if num_bytes % factor == 0:
                return f"{num_bytes // factor}{unit}"
            return f"{num_bytes / factor:.1f}{unit}"
    return str(num_bytes)


def human_size(num_bytes: Union[int, float, str]) -> str:
    """``536870912`` -> ``'512 MiB'``, ``1610612736`` -> ``'1.5 GiB'``,
    ``1000`` -> ``'1000 bytes'``.

    What a person reads in a state's ``changes``: binary units spelled out
    (``MiB``, never the ambiguous ``MB``), one decimal when not exact.
    """
    num_bytes = int(num_bytes)
    for unit, factor in (
        ("PiB", 1024**5),
        ("TiB", 1024**4),
        ("GiB", 1024**3),
        ("MiB", 1024**2),
        ("KiB", 1024),
    ):
        if abs(num_bytes) >= factor:
            if num_bytes % factor == 0:
                return f"{num_bytes // factor} {unit}"
            return f"{num_bytes / factor:.1f} {unit}"
    return f"{num_bytes} bytes" if num_bytes != 1 else "1 byte"


def parse_duration(value: Any) -> float:
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


def format_duration(seconds: Union[int, float, str]) -> str:
    """``86400`` -> ``'1d'``; the largest unit that divides evenly."""
    seconds = float(seconds)
    for unit in ("w", "d", "h", "m"):
        factor = _DURATION_UNITS[unit]
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:g}s"
