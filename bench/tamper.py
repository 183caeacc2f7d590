"""Tamper detection: random tamperings of a demo store, each one caught by `charter audit verify`.

The store is the demo's (`charter demo`: ten billing disputes, two refunds held for a finance
approver), then: one held refund approved with the approver's token and finished by a worker,
an identity provider registered, a person made and revoked, a kill switch engaged, and a
checkpoint signed with `charter audit checkpoint --out FILE` into a file outside the database.
A copy of the store taken before the approval is the tamperer's old backup.

Each trial copies the store (SQLite: the file; PostgreSQL: a schema of its own), applies ONE
tampering of a random kind to a random target through a connection outside Charter that first
drops the append-only triggers and stops enforcing foreign keys, as an attacker with write
access to the database would, and runs `charter audit verify --checkpoint FILE --json` through
the real command line (click's runner, in this process). A trial is *detected* when the command
exits 1 with `"ok": false`; a *crash* when it exits with anything but 0 or 1, or prints a
traceback. Kinds are drawn in shuffled rounds, so each comes up once per round; every round
also verifies one untouched copy, which must pass.

Run `python -m bench.tamper [--n 1000] [--seed N] [--database-url URL] [--write]`; `--write`
also rewrites the tamper section of BENCHMARKS.md. PostgreSQL trials need a role that may
create schemas and set `session_replication_role` (the tamperer's way round foreign keys).
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from click.testing import CliRunner

from bench._report import REPORT, machine, write_section
from bench._tamperings import KINDS, TEXT_ONLY, Kind, Raw
from charter import Client, Config, ControlPlane
from charter.cli import cli
from charter.engine import Worker
from charter.examples import APPROVER, run_demo, workflows
from charter.identity._oidc import ProviderConfig
from charter.store import open_store

if TYPE_CHECKING:
    from collections.abc import Iterator

SEED = 20261125
WHY = "tamper benchmark"


# --- the store and its copies -------------------------------------------------------------------
class SqliteCopies:
    """The demo store in a SQLite file; each trial a copy of the file."""

    postgres = False

    def __init__(self, work: Path) -> None:
        self.work = work
        self.url = f"sqlite://{work / 'demo.db'}"
        self.backup = str(work / "before.db")
        self._trial = work / "trial.db"

    def save(self, name: str) -> None:
        """Keep a consistent copy of the live store as `name` (`before`, `final`)."""
        with sqlite3.connect(self.work / "demo.db") as source:
            target = sqlite3.connect(self.work / f"{name}.db")
            source.backup(target)
            target.close()
        source.close()

    def trial(self) -> str:
        """A fresh copy of the finished store; its URL."""
        self.discard("")
        shutil.copyfile(self.work / "final.db", self._trial)
        return f"sqlite://{self._trial}"

    def discard(self, url: str) -> None:
        del url  # one trial at a time
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self._trial}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing to drop: the files go with the working folder."""


class PostgresCopies:
    """The demo store in a PostgreSQL schema; each trial a schema of its own, made by Charter's
    migrations and filled with the finished store's rows."""

    postgres = True

    def __init__(self, url: str, home: Path) -> None:
        self.base, self.home = url, home
        self.schemas: dict[str, str] = {}
        self.url = self._schema("live")
        self.backup = ""

    def _run(self, statement: Any, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg  # noqa: PLC0415 - only PostgreSQL trials need it

        with psycopg.connect(self.base, autocommit=True) as conn:
            # Copies are written as a tamperer writes: no triggers, no foreign keys.
            conn.execute("SET session_replication_role = replica")
            cursor = conn.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []

    def _schema(self, name: str) -> str:
        """A new schema with Charter's tables (its migrations); its URL."""
        from psycopg import sql  # noqa: PLC0415

        schema = self.schemas[name] = f"tamper_{name}_{secrets.token_hex(4)}"
        self._run(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        joiner = "&" if "?" in self.base else "?"
        url = f"{self.base}{joiner}options={quote(f'-csearch_path={schema}')}"
        config = Config.from_env(keys_env(self.home), home=self.home)
        open_store(url, seal_key=config.seal_key(), keys=config.keys()).close()
        return url

    def _copy(self, source: str, target: str) -> None:
        from psycopg import sql  # noqa: PLC0415

        tables = self._run(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type = 'BASE TABLE'",
            (target,),
        )
        for (table,) in tables:
            into, out = sql.Identifier(target, table), sql.Identifier(source, table)
            self._run(
                sql.SQL("DELETE FROM {}; INSERT INTO {} SELECT * FROM {}").format(into, into, out)
            )

    def save(self, name: str) -> None:
        """Keep a copy of the live store as schema `name` (`before`, `final`)."""
        self._schema(name)
        self._copy(self.schemas["live"], self.schemas[name])
        self.backup = self.schemas.get("before", "")

    def trial(self) -> str:
        """A fresh copy of the finished store; its URL."""
        url = self._schema("trial")
        self._copy(self.schemas["final"], self.schemas["trial"])
        return url

    def discard(self, url: str) -> None:
        del url  # one trial at a time
        self._drop(self.schemas.pop("trial"))

    def _drop(self, schema: str) -> None:
        from psycopg import sql  # noqa: PLC0415

        self._run(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    def close(self) -> None:
        """Drop every schema this run made."""
        for schema in self.schemas.values():
            self._drop(schema)
        self.schemas.clear()


Copies = SqliteCopies | PostgresCopies


def keys_env(home: Path) -> dict[str, str]:
    """The keys every copy is opened with: the demo store's, in its home."""
    return {
        "CHARTER_SEAL_KEY_FILE": str(home / "seal.key"),
        "CHARTER_KEYRING_FILE": str(home / "keyring.json"),
        "CHARTER_SIGNING_KEY_FILE": str(home / "signing.key"),
    }


@dataclass(frozen=True)
class Demo:
    """The finished demo store: where its keys and its checkpoint file are, and its size."""

    home: Path
    checkpoint: Path
    facts: dict[str, int]


def build(home: Path, copies: Copies) -> Demo:
    """The demo, a backup, one approval finished, the extras, a checkpoint kept outside."""
    env = {**keys_env(home), "CHARTER_DATABASE_URL": copies.url}
    config = Config.from_env(env, home=home)
    report = run_demo(config)
    copies.save("before")
    admin = report.admin_token
    with Client(config) as client:
        held = next(r for _, r in report.runs if r.status == "waiting")
        (request, *_) = client.approvals(run_id=held.run_id)
        client.decide(
            request.request_id,
            approver=APPROVER,
            token=report.approver_token,
            decision="approve",
            reason="customer verified",
        )
        plane = ControlPlane(client.store)
        try:
            Worker(plane, workflows(config)).run(until_idle=True)
        finally:
            plane.close()
        provider = ProviderConfig(issuer="https://idp.example", audience="charter", kind="human")
        client.add_provider(provider, credential=admin, reason=WHY)
        people = [
            client.create_human(name=name, roles=["operator"], credential=admin, reason=WHY)
            for name in ("leaver", "oscar")
        ]
        client.revoke(people[0].identity.id, credential=admin, reason=WHY)
        client.kill(reason=WHY, by="oscar", token=people[1].token, tool="refund")
    checkpoint = home / "checkpoint.json"
    args = ["--home", str(home), "audit", "checkpoint", "--out", str(checkpoint)]
    done = CliRunner().invoke(cli, args, env=env)
    if done.exit_code != 0:
        raise RuntimeError(f"checkpoint failed: {done.output}")
    copies.save("final")
    with Client(config) as client:
        found = client.audit()
        if not found.ok:
            raise RuntimeError(f"the demo store does not verify: {found.to_dict()}")
        facts = {
            "runs": len(found.runs),
            "waiting": sum(1 for r in client.runs(limit=100) if r.status == "waiting"),
            "events": sum(r.events_checked for r in found.runs),
            "ledger": found.ledger.entries,
            "control": found.control.events_checked,
            "identities": len(client.identities(include_revoked=True)),
        }
    return Demo(home=home, checkpoint=checkpoint, facts=facts)


# --- trials -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """What `charter audit verify` said of one copy."""

    exit_code: int
    ok: object
    """The `ok` of its JSON (None if it printed none)."""
    crashed: bool
    said: str
    """The first problem it named, or its output when it crashed."""


def verify(demo: Demo, url: str) -> Verdict:
    """`charter audit verify --checkpoint FILE --json` on a copy, through the command line."""
    env = {**keys_env(demo.home), "CHARTER_DATABASE_URL": url}
    args = ["--home", str(demo.home), "audit", "verify", "--checkpoint", str(demo.checkpoint)]
    result = CliRunner().invoke(cli, [*args, "--json"], env=env)
    unexpected = result.exception is not None and not isinstance(result.exception, SystemExit)
    crashed = result.exit_code not in (0, 1) or "Traceback" in result.output or unexpected
    try:
        body = json.loads(result.stdout)
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    said = result.output.strip()[:400] if crashed else _first_problem(body)
    return Verdict(exit_code=result.exit_code, ok=body.get("ok"), crashed=crashed, said=said)


def _first_problem(body: dict[str, Any]) -> str:
    problems = [f"{r['run_id']}: {r['problem']}" for r in body.get("reports", []) if not r["ok"]]
    problems += [
        f"{part}: {body[part]['problem']}"
        for part in ("control_log", "ledger")
        if (body.get(part) or {}).get("problem")
    ]
    problems += [f"identity {i['id']}: {i['problem']}" for i in body.get("identities", [])]
    problems += body.get("problems", [])
    return problems[0] if problems else ""


@dataclass
class Tally:
    """Trials of one kind."""

    trials: int = 0
    detected: int = 0
    crashes: int = 0


@dataclass
class Results:
    """Every trial's outcome, by kind."""

    by_kind: dict[str, Tally]
    untouched: int = 0
    untouched_ok: int = 0
    misses: list[str] = field(default_factory=list)
    """A line per trial not detected, crashed, or untouched and failed: enough to reproduce it."""
    seconds: float = 0.0


def rounds(kinds: list[Kind], n: int, rng: random.Random) -> Iterator[Kind | None]:
    """`n` kinds in shuffled rounds, each round led by one untouched copy (None)."""
    given = 0
    while given < n:
        yield None
        for kind in rng.sample(kinds, len(kinds))[: n - given]:
            given += 1
            yield kind


def run_trials(demo: Demo, copies: Copies, kinds: list[Kind], n: int, seed: int) -> Results:
    """Tamper with `n` copies, one random kind and target each, and verify every one."""
    rng = random.Random(seed)
    results = Results(by_kind={k.name: Tally() for k in kinds})
    started = time.perf_counter()
    for number, kind in enumerate(rounds(kinds, n, rng)):
        url, target = copies.trial(), "nothing"
        if kind is not None:
            db = Raw(url, backup=copies.backup)
            try:
                db.unguard()
                target = kind.apply(db, rng)
            finally:
                db.close()
        verdict = verify(demo, url)
        copies.discard(url)
        line = f"trial {number} ({kind.name if kind else 'untouched'}: {target}): exit "
        line += f"{verdict.exit_code}, ok {verdict.ok}: {verdict.said}"
        if kind is None:
            results.untouched += 1
            results.untouched_ok += verdict.exit_code == 0 and verdict.ok is True
            results.misses += [line] * (verdict.exit_code != 0)
            continue
        tally = results.by_kind[kind.name]
        detected = verdict.exit_code == 1 and verdict.ok is False
        tally.trials += 1
        tally.detected += detected
        tally.crashes += verdict.crashed
        results.misses += [line] * (verdict.crashed or not detected)
        if (number + 1) % 100 == 0:
            print(f"{number + 1} copies verified", file=sys.stderr, flush=True)
    results.seconds = time.perf_counter() - started
    return results


# --- the report ---------------------------------------------------------------------------------
def report(results: Results, demo: Demo, *, backend: str, seed: int, n: int) -> list[str]:
    """The section of BENCHMARKS.md: the machine, the store, the table, the totals."""
    tallies = results.by_kind
    trials, detected, crashes = (
        sum(getattr(t, name) for t in tallies.values())
        for name in ("trials", "detected", "crashes")
    )
    rows = []
    for kind in KINDS:
        t = tallies.get(kind.name)
        if t is None:
            rows.append(f"| `{kind.name}` | {kind.what} | - | - | - |")
        else:
            rows.append(
                f"| `{kind.name}` | {kind.what} | {t.trials} | {t.detected} | {t.crashes} |"
            )
    option = " --database-url URL" if backend == "PostgreSQL" else ""
    facts = demo.facts
    return [
        f"### {backend}",
        "",
        *machine(),
        f"- Command: `.venv/bin/python -m bench.tamper{option} --write` (seed {seed}, n {n})",
        (
            f"- Store: the demo's, finished as described above: {facts['runs']} runs "
            f"({facts['waiting']} waiting), {facts['events']} events, {facts['ledger']} ledger "
            f"entries, {facts['control']} control-log entries, {facts['identities']} identities"
        ),
        (
            f"- Time: {results.seconds:.0f} s for {trials + results.untouched} copies made, "
            "tampered with and verified (one process)"
        ),
        "",
        "| Kind | What the tamperer did | Trials | Detected | Crashes |",
        "|---|---|---:|---:|---:|",
        *rows,
        f"| **total** | {len(tallies)} kinds | **{trials}** | **{detected}** | **{crashes}** |",
        "",
        (
            f"Detected {detected} of {trials} ({detected / max(trials, 1):.0%}), {crashes} "
            f"crashes; untouched copies verified: {results.untouched_ok} of {results.untouched}."
        ),
        *([f"`-`: not run on {backend} ({TEXT_ONLY})."] if len(tallies) < len(KINDS) else []),
    ]


def main(argv: list[str] | None = None) -> int:
    """Build the demo store, tamper with `--n` copies of it, print, and with --write store it."""
    parser = argparse.ArgumentParser(prog="python -m bench.tamper", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="tamperings (default 1000)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--database-url", help="a PostgreSQL database to make schemas in")
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    options = parser.parse_args(argv)
    url = options.database_url
    kinds = [k for k in KINDS if not (k.sqlite_only and url)]
    with tempfile.TemporaryDirectory(prefix="charter-tamper-") as work:
        home = Path(work) / "home"
        copies: Copies = PostgresCopies(url, home) if url else SqliteCopies(Path(work))
        try:
            print("building the demo store...", file=sys.stderr, flush=True)
            demo = build(home, copies)
            results = run_trials(demo, copies, kinds, options.n, options.seed)
        finally:
            copies.close()
    backend = "PostgreSQL" if url else "SQLite"
    section = report(results, demo, backend=backend, seed=options.seed, n=options.n)
    print("\n".join(section))
    for line in results.misses:
        print(f"MISSED {line}", file=sys.stderr)
    if options.write:
        marker = "tamper-postgres" if url else "tamper"
        write_section(
            section, start=f"<!-- bench:{marker}:start -->", end=f"<!-- bench:{marker}:end -->"
        )
        print(f"\nwrote {REPORT}", file=sys.stderr)
    return 1 if results.misses else 0


if __name__ == "__main__":
    sys.exit(main())
