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


def source_lines(attrs, lead: str, tail: str = "") -> list[str]:
    """The lines of ``sde-bias inspect`` that say where a file came from:
    ``{lead}NAME [variant V] from SOURCE{tail}`` and, when the run had overrides,
    ``  overrides  --set K=V ...`` (``attrs``: the file's root attributes)."""
    import json

    v = f" [variant {attrs['variant']}]" if attrs.get("variant") else ""
    out = [f"{lead}{attrs.get('scenario_name')}{v} from {attrs.get('source')}{tail}"]
    ov = json.loads(attrs.get("overrides") or "[]")
    if ov:
        out.append(f"  overrides  {' '.join('--set ' + o for o in ov)}")
    return out
