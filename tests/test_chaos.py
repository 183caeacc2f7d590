"""Chaos: workers killed with SIGKILL at random, even between a side effect and its record,
lose no run and repeat no effect. The scenario lives in `chaos_app.py` (shared with
`bench/chaos.py`); `CHAOS_SEED` picks the kill schedule."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from chaos_app import Scenario

if TYPE_CHECKING:
    from pathlib import Path

RUNS = {"sqlite": 200, "postgres": 300}
DEFAULT_SEED = 20261124


@pytest.mark.slow
class TestChaos:
    # One test per backend for the whole scenario: it costs 10-30 s, and split tests would
    # each rerun it on their own xdist worker. Every assertion message carries the report and
    # the seed.
    def test_sigkilled_workers_finish_every_run_with_each_effect_once(
        self, tmp_path: Path, backend: str, database_url: str
    ):
        """Under SIGKILL every run completes, each effect is in its ledger once, chains verify.

        SQLite: 200 runs, three workers on one file. PostgreSQL: 300 runs, three workers on
        one database, each its own process with its own connections and listener.
        """
        seed = int(os.environ.get("CHAOS_SEED") or DEFAULT_SEED)
        runs = RUNS[backend]
        url = None if backend == "sqlite" else database_url
        # PostgreSQL workers take longer to start (a connection, a listener), so outside
        # kills land later, or most would strike before a worker did anything.
        window = (0.25, 1.0) if backend == "sqlite" else (0.5, 2.0)
        report = Scenario(
            home=tmp_path, runs=runs, seed=seed, database_url=url, kill_window=window
        ).run()
        why = report.summary()

        # Evidence first: the run proves nothing unless workers died, some of them between a
        # sandbox effect and its record, and later workers picked those runs up again.
        assert report.kills > 0, why
        assert report.tool_kills > 0, why
        assert report.resumed_runs > 0, why
        assert report.tool_kills_finished == report.tool_kills, why

        assert report.completed == report.runs, why
        assert (report.duplicate_refunds, report.missing_refunds) == (0, 0), why
        assert (report.duplicate_messages, report.missing_messages) == (0, 0), why
        assert report.mismatched_results == 0, why
        assert (report.chains_ok, report.chains_broken) == (report.runs, 0), why
        assert report.problems == [], why
