"""The runs' pass of an audit: every run's chain against its seal and the ledger's claims.

One pass over the events in key order (run, seq), not a query per run, so a store of a million
events verifies at the rate SHA-256 and the driver allow. The runs can be cut into `Part`s by
run id, each walked alone (by another process, see `_parallel`) and the results merged into
what one pass would have said.
"""

from __future__ import annotations

import itertools
import json
import operator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from charter.store._chain import ChainReport, StoredRow, verify_chain
from charter.store._rows import RUN_COLUMNS, record_from_row

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from charter.store._db import Db, Row

    Stream = Callable[[str, Sequence[Any]], Iterable[StoredRow]]
    """Rows of a query as plain tuples, as the store's `_stream` returns them."""

__all__ = ["UNREADABLE", "WHOLE", "Part", "merged", "shares", "split", "verify_part", "walk"]

HEADS = f"SELECT {RUN_COLUMNS}, head_seq, head_hash, head_mac FROM runs"
"""A run's head row, with every column its sealed summary is made of."""
EVENTS = "SELECT run_id, seq, ts, kind, payload, prev_hash, hash, digest FROM events"
"""An event as `verify_chain` reads it (a `StoredRow`)."""
UNREADABLE = (TypeError, ValueError, KeyError, AttributeError, OverflowError)
"""What reading a row of the wrong shape raises; verification reports it, never raises it."""


@dataclass(frozen=True)
class Part:
    """The runs whose ids lie in [low, high): an open end when None.

    The first part also holds the rows whose run id is NULL (they fall in no range).
    """

    low: Any = None
    high: Any = None
    first: bool = True

    def where(self, column: str, *, nulls: bool = False) -> tuple[str, tuple[Any, ...]]:
        """The SQL condition on `column` selecting this part (and its NULLs, if `nulls`)."""
        terms, params = [], []
        if self.low is not None:
            terms.append(f"{column} >= ?")
            params.append(self.low)
        if self.high is not None:
            terms.append(f"{column} < ?")
            params.append(self.high)
        if not terms:
            terms.append("1 = 1" if nulls else f"{column} IS NOT NULL")
        condition = " AND ".join(terms)
        if nulls and self.first and self.high is not None:
            condition = f"({column} IS NULL OR {condition})"
        return condition, tuple(params)


WHOLE = Part()


def verify_part(
    db: Db,
    stream: Stream,
    key: bytes,
    part: Part,
    claims: Mapping[str, Mapping[int, str]] | None,
) -> tuple[dict[Any, ChainReport], list[ChainReport]]:
    """One part's runs verified (by run id, in start order) and its orphaned events.

    `claims`: the ledger's, as walked; None: this part's, read from the ledger as stored.
    """
    where, params = part.where("run_id", nulls=True)
    heads = db.execute(f"{HEADS} WHERE {where} ORDER BY started_at, run_id", params).fetchall()
    if claims is None:
        subjects, bounds = part.where("subject")
        claimed: dict[str, dict[int, str]] = {}
        for subject, seq, digest in db.execute(
            "SELECT subject, head_seq, head_hash FROM ledger "
            f"WHERE kind IN ('run', 'control') AND {subjects}",
            bounds,
        ).fetchall():
            claimed.setdefault(subject, {})[seq] = digest
        claims = claimed
    where, params = part.where("run_id")
    events = itertools.chain(
        stream(f"{EVENTS} WHERE run_id IS NULL ORDER BY seq", ()) if part.first else (),
        stream(f"{EVENTS} WHERE {where} ORDER BY run_id, seq", params),
    )
    return walk(db, heads, events, claims, key)


def merged(
    db: Db, results: list[tuple[dict[Any, ChainReport], list[ChainReport]]]
) -> tuple[list[ChainReport], list[ChainReport]]:
    """The parts' results as the one-process pass gives them.

    Reports in start order, then the orphans in run-id order (the parts are in run-id order).
    """
    by_run: dict[Any, ChainReport] = {}
    orphans: list[ChainReport] = []
    for reports, lost in results:
        by_run.update(reports)
        orphans += lost
    started = db.execute("SELECT run_id FROM runs ORDER BY started_at, run_id").fetchall()
    order = dict.fromkeys(r[0] for r in started)
    return [by_run[rid] for rid in order if rid in by_run], orphans


def walk(
    db: Db,
    heads: list[Row],
    stream: Iterable[StoredRow],
    claims: Mapping[Any, Mapping[int, str]],
    key: bytes,
) -> tuple[dict[Any, ChainReport], list[ChainReport]]:
    """Every head's report (by run id, in the heads' order), and the events without a head."""
    found: dict[Any, ChainReport] = {}
    by_run = {head["run_id"]: head for head in heads}
    orphans: list[ChainReport] = []
    for rid, group in itertools.groupby(stream, key=operator.itemgetter(0)):
        head = by_run.get(rid)
        if head is None:
            orphans.append(_orphaned(str(rid)))
            continue
        found[rid] = _verify_head(head, group, key, claims.get(rid, {}))
    # Runs with no events at all never came up in the pass; they are checked empty.
    reports = {
        rid: found.pop(rid) if rid in found else _verify_head(head, iter(()), key, claims.get(rid))
        for rid, head in by_run.items()
    }
    if any(r.events_purged for r in reports.values()):
        purged_by_retention = _retention_runs(db)
        reports = {rid: _purge_recorded(r, purged_by_retention) for rid, r in reports.items()}
    return reports, orphans


def _verify_head(
    head: Row, rows: Iterable[StoredRow], key: bytes, claims: Mapping[int, str] | None
) -> ChainReport:
    try:
        summary = record_from_row(head).sealed_summary()
        return verify_chain(
            run_id=head["run_id"],
            rows=rows,
            head_seq=head["head_seq"],
            head_hash=head["head_hash"],
            head_mac=head["head_mac"],
            summary=summary,
            key=key,
            claims=claims,
        )
    except UNREADABLE as exc:
        return ChainReport(
            run_id=str(head["run_id"]),
            ok=False,
            events_checked=0,
            broken_at=1,
            problem=f"the run's row is unreadable ({type(exc).__name__}): it was altered "
            "outside Charter",
        )


def _retention_runs(db: Db) -> set[str]:
    """The runs whose redacted payloads a retention entry of the control log says it dropped."""
    rows = db.execute("SELECT payload FROM control_log WHERE action = 'retention'").fetchall()
    found: set[str] = set()
    for row in rows:
        try:
            found.update(json.loads(row["payload"]).get("runs", []))
        except UNREADABLE:
            continue  # an unreadable entry vouches for nothing; the chain reports it
    return found


def _purge_recorded(report: ChainReport, purged_by_retention: set[str]) -> ChainReport:
    """A run with dropped payloads verifies only if retention, on record, dropped them.

    The database lets a marker replace a payload (that is how retention drops it), so a
    marker alone proves nothing; the control log, sealed apart, says which runs were purged.
    """
    if not report.events_purged or report.run_id in purged_by_retention:
        return report
    return replace(
        report,
        ok=False,
        broken_at=1,
        problem=(
            f"{report.events_purged} event(s) were dropped as purged, but no retention entry "
            "of the control log names this run: they were hidden, not purged"
        ),
    )


def _orphaned(run_id: str) -> ChainReport:
    """A run whose events remain but whose head row is gone: it was deleted from the file."""
    return ChainReport(
        run_id=run_id,
        ok=False,
        events_checked=0,
        broken_at=1,
        problem="the run's events are stored but its head row is missing: it was deleted",
    )


def shares(count: int, events: int, ledger: int) -> list[float]:
    """Each part's share of the runs, so that each process has about as much to do.

    The first part's process also walks the ledger and puts the parts together, while each
    helper reads its runs' claims from the ledger and starts later: on balance, a ledger entry
    here weighs about a third of an event (measured on 1M events and 364k ledger entries).
    """
    walk = ledger * 0.3
    load = (events + walk) / count
    first = min(1.0, max(0.0, load - walk) / events) if events else 1 / count
    return [first] + [(1 - first) / (count - 1)] * (count - 1)


def split(db: Db, shares: list[float]) -> list[Part]:
    """Parts of the runs in run-id order, each about its share of them."""
    ids = [
        r[0]
        for r in db.execute(
            "SELECT run_id FROM runs WHERE run_id IS NOT NULL ORDER BY run_id"
        ).fetchall()
    ]
    cuts = itertools.accumulate(shares[:-1])
    bounds = list(dict.fromkeys(ids[min(len(ids) - 1, int(len(ids) * cut))] for cut in cuts))
    if not ids or not bounds:
        return [WHOLE]
    edges = [None, *bounds, None]
    return [
        Part(low, high, first=n == 0) for n, (low, high) in enumerate(itertools.pairwise(edges))
    ]
