"""Run one measurement of one system in this process: the driver `bench/peers/run.py` calls
this in a fresh process per measurement.

    python -m bench.peers SYSTEM MEASURE --home DIR [--steps N] [--runs N] [--policy]
        [--repetitions N]

MEASURE is one of sequential, concurrent, resume-prepare, resume-recover, effects-prepare,
effects-recover. The result is a JSON line on stdout (see `Measured`); the *-prepare
measures end with the process SIGKILLed, by design.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.peers._common import Adapter

SYSTEMS: dict[str, tuple[str, str]] = {
    "charter-sqlite": ("bench.peers._charter", "sqlite"),
    "charter-sqlite-2w": ("bench.peers._charter_workers", "sqlite"),
    "raw-sqlite": ("bench.peers._raw", "sqlite"),
    "dbos-sqlite": ("bench.peers._dbos", "sqlite"),
    "dbos-postgres": ("bench.peers._dbos", "postgres"),
    "langgraph-sqlite": ("bench.peers._langgraph", "sqlite"),
    "temporal-dev": ("bench.peers._temporal", "dev"),
}
"""System name -> (module, variant); each module has `adapter(variant) -> Adapter`."""

MEASURES = (
    "sequential",
    "concurrent",
    "resume-prepare",
    "resume-recover",
    "effects-prepare",
    "effects-recover",
)


def load(system: str) -> Adapter:
    """The adapter for `system`, importing its module (and so its peer library) only now."""
    module, variant = SYSTEMS[system]
    adapter: Adapter = importlib.import_module(module).adapter(variant)
    return adapter


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("measure", choices=MEASURES)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--policy", action="store_true")
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    args.home.mkdir(parents=True, exist_ok=True)
    adapter = load(args.system)
    match args.measure:
        case "sequential":
            adapter.sequential(
                args.home, steps=args.steps, policy=args.policy, repetitions=args.repetitions
            ).emit()
        case "concurrent":
            adapter.concurrent(
                args.home,
                runs=args.runs,
                steps=args.steps,
                policy=args.policy,
                repetitions=args.repetitions,
            ).emit()
        case "resume-prepare":
            adapter.resume_prepare(args.home, steps=args.steps)
        case "resume-recover":
            adapter.resume_recover(args.home, steps=args.steps).emit()
        case "effects-prepare":
            adapter.effects_prepare(args.home)
        case _:
            adapter.effects_recover(args.home).emit()


if __name__ == "__main__":
    main()
