"""Sizes, durations and rates as a person reads them."""

from __future__ import annotations

import math

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
# Each step of a duration: its unit, the seconds in one, and the smaller unit shown beside it.
STEPS = (("d", 86400), ("h", 3600), ("min", 60))


def size_text(value: float | None) -> str:
    """1536 -> '1.5 KiB'; None (not known) -> '-'."""
    if value is None:
        return "-"
    for unit in UNITS[:-1]:
        if unit == "B" and abs(value) < 1024:
            return f"{value:.0f} B"
        if round(abs(value), 1) < 1024:  # 1023.96 KiB is '1.0 MiB', not '1024.0 KiB'
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {UNITS[-1]}"


def duration_text(seconds: float | None) -> str:
    """At most two units, the smaller one rounded down: 1.43 -> '1.4 s', 75 -> '1 min 15 s',
    7500 -> '2 h 5 min', 180000 -> '2 d 2 h'; None (not known) -> '-'."""
    if seconds is None:
        return "-"
    if seconds < 9.95:
        return f"{seconds:.0f} s" if float(seconds).is_integer() else f"{max(seconds, 0):.1f} s"
    whole = round(seconds)
    for index, (unit, size) in enumerate(STEPS):
        if whole >= size:
            smaller, smaller_size = STEPS[index + 1] if index + 1 < len(STEPS) else ("s", 1)
            rest = (whole % size) // smaller_size
            return f"{whole // size} {unit}" + (f" {rest} {smaller}" if rest else "")
    return f"{whole} s"


def age_text(seconds: float | None) -> str:
    """How long ago, to the unit that matters for a daily job: '42 min ago', '5 h ago', '3 d ago';
    None -> 'never'."""
    if seconds is None:
        return "never"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86400:.0f} d ago"


def rate_text(fraction: float | None) -> str:
    """0.99666 -> '99.6%', rounded down so that only a perfect rate reads '100%'; None -> '-'."""
    if fraction is None:
        return "-"
    percent = math.floor(fraction * 1000 + 1e-9) / 10
    return f"{percent:.0f}%" if percent == int(percent) else f"{percent:.1f}%"
