"""What every benchmark shares: the machine's description, percentiles, profile locations, and
writing a section of BENCHMARKS.md between its markers."""

from __future__ import annotations

import cProfile
import math
import os
import platform
import pstats
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import charter

if TYPE_CHECKING:
    from collections.abc import Callable

TOP = 8
"""Rows per profile table."""
ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "BENCHMARKS.md"
CHARTER_DIR = str(Path(charter.__file__).resolve().parent)


def percentile(ordered: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    return float(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)])


def where(filename: str, line: int, func: str) -> str:
    """A profile row's function, named relative to the package when it is Charter's."""
    if filename.startswith(CHARTER_DIR):
        module = "charter/" + filename.removeprefix(CHARTER_DIR).lstrip("/")
        return f"`{module}:{line}` `{func}`"
    if filename == "~":
        return f"`{func}` (built-in)"
    return f"`{Path(filename).name}:{line}` `{func}`"


def machine() -> list[str]:
    """The facts about this machine a reader needs to compare numbers."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        system = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        system = platform.system()
    return [
        f"- CPU: {model}, {cpus} CPUs available (`nproc`)",
        f"- OS: {system}, kernel {platform.release()} ({platform.machine()})",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- cedarpy: {metadata.version('cedarpy')}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def write_section(section: list[str], *, start: str, end: str) -> None:
    """Replace the text between `start` and `end` in BENCHMARKS.md, or append the section."""
    block = "\n".join([start, *section, end])
    text = REPORT.read_text(encoding="utf-8") if REPORT.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    REPORT.write_text(text, encoding="utf-8")


@dataclass(frozen=True)
class ProfileRow:
    """One function in a profile."""

    where: str
    calls: int
    own_s: float
    """Time in the function itself (cProfile's tottime)."""
    cumulative_s: float


@dataclass(frozen=True)
class Profiled:
    """A profiled call: its wall time and its top functions."""

    wall_s: float
    by_cumulative: list[ProfileRow]
    """Charter-owned functions, by cumulative time."""
    by_own: list[ProfileRow]
    """All functions, by time spent in themselves."""


def profile(call: Callable[[], object], top: int = TOP) -> Profiled:
    """cProfile one call: the top Charter functions by cumulative time, the top leaves by own."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    call()
    profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = [
        (filename.startswith(CHARTER_DIR), ProfileRow(where(filename, line, func), n, own, cum))
        for (filename, line, func), (_, n, own, cum, _) in stats.items()
        if filename != __file__ and "_lsprof.Profiler" not in func
    ]
    owned = sorted((r for mine, r in rows if mine), key=lambda r: r.cumulative_s, reverse=True)
    leaves = sorted((r for _, r in rows), key=lambda r: r.own_s, reverse=True)
    return Profiled(wall, owned[:top], leaves[:top])


def profile_section(title: str, profiled: Profiled) -> list[str]:
    """The profile as Markdown: Charter's functions by cumulative time, all by own time."""
    wall = profiled.wall_s

    def table(rows: list[ProfileRow], key: str) -> list[str]:
        head = f"| Function | calls | {key} s | share of the call |"
        lines = [head, "|---|---:|---:|---:|"]
        for r in rows:
            value = r.cumulative_s if key == "cumulative" else r.own_s
            lines.append(f"| {r.where} | {r.calls} | {value:.3f} | {value / wall:.0%} |")
        return lines

    return [
        f"#### cProfile: {title} ({wall:.2f} s under the profiler)",
        "",
        (
            f"Top {TOP} Charter functions by cumulative time (they nest; profiling inflates Python "
            "code against C):"
        ),
        "",
        *table(profiled.by_cumulative, "cumulative"),
        "",
        f"Top {TOP} functions by their own time (tottime), Charter's or not:",
        "",
        *table(profiled.by_own, "own"),
    ]
