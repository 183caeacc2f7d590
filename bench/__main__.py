"""One entry point for every benchmark: `python -m bench all [--write]`, or one by name.

    python -m bench all        # every one in SUITE: gate, limits, ..., tamper, trust
    python -m bench compare    # one of them by name (also: chaos)

`--write` rewrites each benchmark's results section of BENCHMARKS.md. `make bench` installs
the peers into their own environment (.venv-bench, extra `[bench]`) and runs `all --write`.
The chaos run is not part of `all` (it measures correctness under kills, not speed): run it
with `make chaos`.
"""

from __future__ import annotations

import importlib
import sys

SUITE = ("gate", "limits", "privacy", "durable", "explain", "compare", "scale", "tamper", "trust")
KNOWN = (*SUITE, "chaos")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"all", *KNOWN}:
        print(__doc__, file=sys.stderr)
        return 2
    names = SUITE if argv[0] == "all" else (argv[0],)
    status = 0
    for name in names:
        print(f"\n=== bench.{name} ===", file=sys.stderr, flush=True)
        status |= importlib.import_module(f"bench.{name}").main(argv[1:])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
