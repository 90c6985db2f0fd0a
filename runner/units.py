"""Sizes as a person reads them."""

from __future__ import annotations

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size_text(value: float | None) -> str:
    """1536 -> '1.5 KiB'; None (not known) -> '-'."""
    if value is None:
        return "-"
    for unit in UNITS[:-1]:
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {UNITS[-1]}"
