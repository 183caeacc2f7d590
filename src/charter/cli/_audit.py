"""`charter audit`: verify the store, sign checkpoints of it, and hand out the key to check them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from charter._client import Client
from charter.cli._common import (
    EXIT_CHECK_FAILED,
    config_of,
    console,
    emit_json,
    handled,
    json_option,
)
from charter.exceptions import UserError
from charter.store._checkpoint import Checkpoint, key_id, load_public_key, public_pem

if TYPE_CHECKING:
    from charter.store._audit import StoreReport

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """Audit the log: verify it, checkpoint it, and share the checkpoints' public key."""


def _read_checkpoint(path: Path) -> Checkpoint:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{path}: cannot read the checkpoint ({type(exc).__name__})",
            hint="give the file `charter audit checkpoint --out FILE` wrote",
        ) from None
    return Checkpoint.parse(text, source=str(path))


@audit.command("verify")
@click.argument("run_id", required=False)
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A checkpoint kept outside the database: the store must still hold what it signed.",
)
@click.option(
    "--public-key",
    "public_key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The signer's public key (PEM) the checkpoint must be signed with.",
)
@json_option
@click.pass_context
@handled
def audit_verify(
    ctx: click.Context,
    run_id: str | None,
    checkpoint_file: Path | None,
    public_key_file: Path | None,
    as_json: bool,
) -> None:
    """Verify the store; report what is broken, and exit 1 if anything is.

    With RUN, that run's chain, seal and ledger entries. Without: every run, the control log,
    the ledger over both (deleted or rolled-back runs, a wiped control log), every identity,
    and with --checkpoint, that the store still holds what the checkpoint signed.
    """
    with Client(config_of(ctx)) as client:
        if run_id is not None:
            (report,) = client.verify(run_id)
            if as_json:
                emit_json({"runs": 1, "broken": int(not report.ok), "reports": [report.__dict__]})
            elif report.ok:
                console.print(f"[green]ok[/]: {run_id}, {report.events_checked} event(s) checked")
            else:
                problem = escape(str(report.problem))
                console.print(f"[red]BROKEN[/] {run_id} at event {report.broken_at}: {problem}")
            if not report.ok:
                sys.exit(EXIT_CHECK_FAILED)
            return
        checkpoint = _read_checkpoint(checkpoint_file) if checkpoint_file else None
        trusted = load_public_key(public_key_file) if public_key_file else None
        found = client.audit(checkpoint=checkpoint, trusted=trusted)
    if as_json:
        emit_json(found.to_dict())
    else:
        _print(found)
    if not found.ok:
        sys.exit(EXIT_CHECK_FAILED)


def _print(found: StoreReport) -> None:
    """What is broken, one line each, then the totals."""
    broken = [f"{r.run_id} at event {r.broken_at}: {r.problem}" for r in found.runs if not r.ok]
    if not found.control.ok:
        broken.append(f"control log at entry {found.control.broken_at}: {found.control.problem}")
    if not found.ledger.ok:
        broken.append(f"ledger at entry {found.ledger.broken_at}: {found.ledger.problem}")
    broken += [f"identity {i}: {problem}" for i, problem in found.identities]
    broken += found.problems
    for line in broken:
        console.print(f"[red]BROKEN[/] {escape(line)}", soft_wrap=True)
    status = "[green]ok[/]" if found.ok else f"[red]{len(broken)} broken[/]"
    against = f"; against the checkpoint of {found.checkpoint.ts}" if found.checkpoint else ""
    console.print(
        f"{status}: {len(found.runs)} run(s), {sum(r.events_checked for r in found.runs)} "
        f"event(s), {found.ledger.entries} ledger entries checked{against}"
    )


@audit.command("checkpoint")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the checkpoint here (keep it outside the database: WORM storage).",
)
@json_option
@click.pass_context
@handled
def audit_checkpoint(ctx: click.Context, out: Path | None, as_json: bool) -> None:
    """Sign the store's ledger head with the checkpoint key, record it, and print it."""
    with Client(config_of(ctx)) as client:
        signed = client.checkpoint()
    if out is not None:
        _write_new(out, signed.to_json() + "\n")
    if as_json:
        emit_json({**signed.__dict__, "written_to": str(out) if out else None})
        return
    console.print(
        f"checkpoint of store {signed.store_id} at ledger entry {signed.ledger_seq} "
        f"({signed.runs} runs), signed by key {signed.key_id}"
    )
    if out is not None:
        console.print(f"written to {out}: keep it where the database's writers cannot reach")


def _write_new(path: Path, text: str) -> None:
    """Write a file that does not exist yet: a checkpoint never overwrites an older one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UserError(
            f"{path} exists; a checkpoint never replaces an older one",
            hint="name each checkpoint apart, e.g. --out checkpoints/$(date +%Y%m%dT%H%M).json",
        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot write the checkpoint ({exc.strerror})") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


@audit.command("public-key")
@json_option
@click.pass_context
@handled
def audit_public_key(ctx: click.Context, as_json: bool) -> None:
    """Print the public key checkpoints are signed with (PEM), for auditors to keep."""
    public = config_of(ctx).signing_key().public_key()
    if as_json:
        emit_json({"key_id": key_id(public), "pem": public_pem(public)})
        return
    click.echo(public_pem(public), nl=False)
