"""How numbers, durations and rates are printed by the command line and progress lines."""

from __future__ import annotations

import math


def fmt_number(x: float) -> str:
    """Four decimals, or scientific notation outside ``[1e-3, 1e5)``; ``nan`` for NaN."""
    if not (x == x):
        return "nan"
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e5):
        return f"{x:.3e}"
    return f"{x:.4f}"


def fmt_duration(seconds: float) -> str:
    """``MM:SS`` or ``H:MM:SS``; ``?`` when unknown (not finite)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fmt_rate(r: float) -> str:
    """A rate per second with a k/M suffix."""
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if r >= div:
            return f"{r / div:.1f}{unit}"
    return f"{r:.0f}" if r >= 10 else f"{r:.2f}"
