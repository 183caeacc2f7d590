"""`charter report costs`: the cost report as a table, CSV, JSON or a PNG chart."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table

from charter._client import Client
from charter._events import OUTCOMES
from charter._report import GROUP_BY, CostReport, GroupBy, GroupCosts, cost_report
from charter._time import utcnow
from charter.cli._common import config_of, console, emit_json, handled, json_option
from charter.exceptions import ConfigError, UserError

__all__ = ["cost_table", "costs_command", "csv_text", "parse_since", "report", "write_png"]

_SPLIT = (("model", "model_usd"), ("verification", "verification_usd"), ("tool", "tool_usd"))
"""The cost split, in the order the chart stacks it."""
_RELATIVE = re.compile(r"(?P<n>\d+)(?P<unit>[smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@click.group()
def report() -> None:
    """Reports computed from the run log."""


@report.command("costs")
@click.option(
    "--by",
    type=click.Choice(GROUP_BY),
    default="agent",
    show_default=True,
    help="One row per agent, agent@contract-version, tenant or outcome.",
)
@click.option(
    "--since",
    "since_text",
    metavar="WHEN",
    help="Only runs started since WHEN: an ISO date/time (UTC unless it says) or 24h, 7d, 2w.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), help="Default: table."
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also draw cost per successful outcome and the cost split to this PNG file.",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Read at most this many runs, newest first.",
)
@json_option
@click.pass_context
@handled
def costs_command(
    ctx: click.Context,
    *,
    by: GroupBy,
    since_text: str | None,
    fmt: str | None,
    png: Path | None,
    limit: int,
    as_json: bool,
) -> None:
    """What runs cost per group: spend split, outcomes, cost per success, human rework."""
    if as_json and fmt not in (None, "json"):
        raise UserError(f"--json and --format {fmt} disagree", hint="give one of them")
    since = parse_since(since_text, now=utcnow()) if since_text else None
    with Client(config_of(ctx)) as client:
        result = cost_report(client.store, by=by, since=since, limit=limit)
    if png is not None:
        write_png(result, png)
    match "json" if as_json else fmt or "table":
        case "json":
            emit_json(result.to_dict())
        case "csv":
            click.echo(csv_text(result), nl=False)
        case _:
            console.print(cost_table(result))
            in_flight = result.totals.to_dict()["in_flight"]
            if in_flight:
                console.print(f"{in_flight} run(s) in flight: in the cost, not yet in outcomes")
            if result.truncated:
                console.print(f"[yellow]only the newest {limit} runs are counted[/] (--limit)")
            if png is not None:
                console.print(f"chart: {png}", soft_wrap=True)


def parse_since(text: str, *, now: datetime) -> datetime:
    """The moment `--since` names.

    Either an ISO date or time (UTC unless it says otherwise), or a duration before `now`:
    `90s`, `15m`, `24h`, `7d`, `2w`.

    Raises:
        UserError: Neither form.
    """
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative["unit"]]: int(relative["n"])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(
            f"--since {text!r} is neither an ISO date/time nor a duration",
            hint="--since 2026-03-01, --since 2026-03-01T09:00Z, --since 24h, --since 7d",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def csv_text(result: CostReport) -> str:
    """One header row and one row per group; money and seconds to 6 decimals, empty for n/a."""
    columns = list(_flat(GroupCosts(group="")))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for group in result.groups:
        writer.writerow(
            {k: round(v, 6) if isinstance(v, float) else v for k, v in _flat(group).items()}
        )
    return out.getvalue()


def _flat(group: GroupCosts) -> dict[str, Any]:
    """The group's figures with the outcome counts as columns of their own, in place."""
    row: dict[str, Any] = {}
    for key, value in group.to_dict().items():
        if key == "outcomes":
            # The taxonomy's outcomes only: the columns must not depend on what was recorded.
            row.update({name: value.get(name, 0) for name in OUTCOMES})
        else:
            row[key] = value
    return row


def cost_table(result: CostReport) -> Table:
    """The essentials of the report as a table readable at 100 columns; CSV and JSON have all."""
    table = Table(
        title=f"Costs by {result.by}{_window(result)}",
        caption="res/defl: resolved/deflected runs; $/success: every run's cost per resolved or "
        "deflected one; errors, escal.: shares of finished runs; wait: median approval wait",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    headers = ("group", "runs", "res/defl", "cost", "$/success", "verify", "errors", "escal.")
    for header in (*headers, "wait"):
        table.add_column(
            header,
            justify="left" if header == "group" else "right",
            no_wrap=header != "group",
            overflow="fold",
        )
    rows = [g.to_dict() for g in result.groups]
    for i, row in enumerate([*rows, result.totals.to_dict()]):
        table.add_row(
            row["group"],
            str(row["runs"]),
            f"{row['outcomes']['resolved']}/{row['outcomes']['deflected']}",
            _money(row["cost_usd"]),
            _money(row["cost_per_success_usd"]),
            _money(row["verification_usd"]),
            _percent(row["error_rate"]),
            _percent(row["escalation_rate"]),
            _duration(row["approval_wait_median_s"]),
            end_section=i == len(rows) - 1,
            style="bold" if i == len(rows) else None,
        )
    return table


def _money(usd: float | None) -> str:
    if usd is None:
        return "—"
    # Cents hide the price of a model turn (a few hundredths of a cent): small sums get more.
    return f"${usd:,.2f}" if abs(usd) >= 1 or usd == 0 else f"${usd:.4f}"


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def write_png(result: CostReport, path: Path) -> None:
    """Chart cost per successful outcome and the model/verification/tool split per group.

    Raises:
        ConfigError: matplotlib (the `charts` extra) is not installed.
        UserError: The file cannot be written.
    """
    try:
        # Agg by hand, without pyplot: no display, no global figure state to leak.
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
        from matplotlib.ticker import FuncFormatter  # noqa: PLC0415
    except ImportError:
        raise ConfigError("--png needs matplotlib", hint="pip install 'charter[charts]'") from None
    rows = [g.to_dict() for g in result.groups]
    names = [r["group"] for r in rows]
    ticks = list(range(len(rows)))
    figure = Figure(figsize=(max(8.0, 4 + 1.2 * len(rows)), 5.0), layout="constrained")
    FigureCanvasAgg(figure)
    per_success, split = figure.subplots(1, 2)
    per = [r["cost_per_success_usd"] for r in rows]
    bars = per_success.bar(ticks, [p or 0.0 for p in per])
    per_success.bar_label(bars, labels=["no success" if p is None else _money(p) for p in per])
    per_success.set_title("Cost per successful outcome (all runs' cost)")
    per_success.set_ylabel("USD per resolved or deflected run")
    bottom = [0.0] * len(rows)
    for label, key in _SPLIT:
        values = [r[key] for r in rows]
        split.bar(ticks, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    split.set_title("Cost split")
    split.set_ylabel("USD")
    if rows:
        split.legend(title="cost of")
    for axes in (per_success, split):
        axes.set_xticks(ticks, names, rotation=20, horizontalalignment="right")
        axes.set_xlabel(result.by)
        # Ticks need the precision the axis has; the fixed 4 decimals of `_money` would round
        # neighbouring ticks to one label.
        axes.yaxis.set_major_formatter(FuncFormatter(lambda usd, _: f"${usd:,.6g}"))
    empty = "" if rows else " (no runs)"
    figure.suptitle(f"Charter costs by {result.by}{_window(result)}{empty}")
    try:
        figure.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise UserError(
            f"cannot write the chart to {path}: {exc.strerror or exc}",
            hint="give --png a file in a folder that exists and you may write to",
        ) from None


def _window(result: CostReport) -> str:
    return f" since {result.since.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if result.since else ""
