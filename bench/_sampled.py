"""A sampling profile (pyinstrument) of one call, summarised as two small tables.

cProfile (bench/_report.py) counts every call and inflates Python code against C; a sampler
does neither, so the two together say where a step's time goes with some confidence. Tables:
Charter's functions by the time spent inside them and everything they call (they nest), and
all functions by the time spent in themselves (the leaves: SQLite, Cedar, hashing...).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from bench._report import CHARTER_DIR

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyinstrument.frame import Frame

TOP = 10
INTERVAL_S = 0.0002


def sampled(call: Callable[[], object], title: str, *, divisor: int = 1) -> list[str]:
    """Profile `call`; times are shown in µs per `divisor` (per step, when it runs steps)."""
    try:
        from pyinstrument import Profiler  # noqa: PLC0415 - extra [bench] only
    except ImportError:
        return ["(no sampling profile: `pip install 'charter[bench]'` for pyinstrument)"]
    profiler = Profiler(interval=INTERVAL_S)
    profiler.start()
    call()
    session = profiler.stop()
    root = session.root_frame()
    if root is None:
        return ["(the sampler took no samples)"]
    inclusive: dict[str, float] = defaultdict(float)
    own: dict[str, float] = defaultdict(float)
    walk(root, inclusive, own, set())
    total = root.time

    def table(values: dict[str, float], heading: str) -> list[str]:
        rows = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:TOP]
        lines = [f"| {heading} | µs per step | share |", "|---|---:|---:|"]
        lines += [f"| {name} | {t / divisor * 1e6:,.0f} | {t / total:.0%} |" for name, t in rows]
        return lines

    return [
        f"#### pyinstrument: {title} ({total:.2f} s sampled every {INTERVAL_S * 1e6:.0f} µs)",
        "",
        f"Top {TOP} of Charter's functions, with what they call (they nest):",
        "",
        *table(inclusive, "Charter function"),
        "",
        f"Top {TOP} functions by their own time, Charter's or not:",
        "",
        *table(own, "Function"),
    ]


def walk(frame: Frame, inclusive: dict[str, float], own: dict[str, float], open_: set[str]) -> None:
    """Sum inclusive time per Charter function (once per stack, so recursion does not
    double-count) and self time per function."""
    if frame.is_synthetic:
        return  # a "[self]" or "[await]" marker: already in its parent's total_self_time
    name = label(frame)
    mine = (frame.file_path or "").startswith(CHARTER_DIR)
    counted = mine and name not in open_
    if counted:
        inclusive[name] += frame.time
        open_.add(name)
    own[name] += frame.total_self_time
    for child in frame.children:
        walk(child, inclusive, own, open_)
    if counted:
        open_.discard(name)


def label(frame: Frame) -> str:
    path = frame.file_path or ""
    if path.startswith(CHARTER_DIR):
        return f"`charter/{path.removeprefix(CHARTER_DIR).lstrip('/')}` `{frame.function}`"
    short = (frame.file_path_short or path or "?").rsplit("/", 1)[-1]
    return f"`{short}` `{frame.function}`"
