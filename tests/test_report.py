"""`charter report costs`: figures recomputed from real stores' events, and the command's output.

Costs are dyadic fractions (1/8, 1/16, ...) so sums are exact in floating point and every
figure is asserted with `==`.
"""

from __future__ import annotations

import io
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from rich.console import Console

from _factories import started_event
from charter._events import (
    ApprovalDecided,
    ApprovalExpired,
    ApprovalRequested,
    Check,
    Event,
    GateDecided,
    ModelResponded,
    RunFinished,
    ToolCompleted,
)
from charter._report import CostReport, RunCosts, cost_report, group_runs, run_costs
from charter._time import utcnow
from charter.cli import cli
from charter.cli._report import cost_table, csv_text, parse_since, report, write_png
from charter.exceptions import ConfigError, UserError
from charter.store import RunRecord, StoredEvent

if TYPE_CHECKING:
    from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _started(agent: str, version: str, tenant: str):
    return started_event(tenant).model_copy(update={"agent": agent, "contract_version": version})


def _model(cost: float, *, purpose: str = "act", cached: bool = False, step: int = 1):
    return ModelResponded(
        step=step,
        model="scripted:default",
        request_hash="r" * 64,
        text="",
        tool_calls=[],
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=cost,
        latency_ms=1.0,
        purpose=purpose,  # type: ignore[arg-type]
        cached=cached,
    )


def _tool(cost: float, *, attempts: int = 1, status: str = "ok", step: int = 2):
    return ToolCompleted(
        step=step,
        tool="record_write",
        status=status,  # type: ignore[arg-type]
        output={"item": "x"} if status == "ok" else None,
        output_hash="o" * 64 if status == "ok" else None,
        attempts=attempts,
        latency_ms=1.0,
        cost_usd=cost,
        idempotency_key=f"key_{step}",
    )


def _finished(outcome: str) -> RunFinished:
    status = {"resolved": "completed", "deflected": "completed", "abandoned": "cancelled"}
    return RunFinished(
        status=status.get(outcome, "failed"),  # type: ignore[arg-type]
        outcome=outcome,  # type: ignore[arg-type]
        reason="done",
        cost_usd=0.0,
        prompt_tokens=0,
        completion_tokens=0,
    )


def _requested(request_id: str, step: int = 2) -> ApprovalRequested:
    return ApprovalRequested(
        step=step,
        request_id=request_id,
        tool="record_write",
        tier="ops",
        role="approver",
        approvers=1,
        expires_at="2099-01-01T00:00:00+00:00",
        summary="write",
        diff=[],
    )


def _decided(request_id: str, status: str = "approved", step: int = 2) -> ApprovalDecided:
    return ApprovalDecided(
        step=step,
        request_id=request_id,
        decision="approve",
        approver_id="hum_1",
        approver="ann",
        reason="ok",
        granted=1,
        needed=1,
        status=status,  # type: ignore[arg-type]
    )


def _verifier_gate(cost: float, step: int = 2, decision: str = "allowed") -> GateDecided:
    check = Check(
        check="verifier",
        outcome="pass",
        reason="looks right",
        source="verifier:judge",
        detail={"cost_usd": cost, "model": "judge"},
        duration_us=10,
    )
    return GateDecided(
        step=step,
        tool="record_write",
        decision=decision,  # type: ignore[arg-type]
        check=None,
        reason="ok",
        policy_ids=[],
        checks=[check],
    )


# (run id, agent, version, tenant, events after the start)
RUNS: list[tuple[str, str, str, str, list[Event]]] = [
    (
        "run_a",
        "alpha",
        "1.0",
        "acme",
        [
            _model(0.125),
            _model(0.0625, purpose="verify"),
            _tool(0.25, attempts=3),
            _finished("resolved"),
        ],
    ),
    ("run_b", "alpha", "1.0", "acme", [_model(0.5), _tool(0.25, status="error")]),
    ("run_c", "alpha", "2.0", "globex", [_model(0.25), _finished("deflected")]),
    ("run_d", "beta", "1.0", "globex", [_model(0.0, cached=True), _model(0.125)]),
    ("run_e", "beta", "1.0", "acme", [_model(0.0625), _requested("apr_e")]),
]
"""alpha: resolved, failed, deflected; beta: escalated, one in flight held for approval."""
FINISH = {"run_b": "failed", "run_d": "escalated"}


@pytest.fixture
def filled(store):
    """`store` holding `RUNS`."""
    for run_id, agent, version, tenant, events in RUNS:
        store.start_run(run_id, _started(agent, version, tenant))
        store.append(run_id, events)
        if run_id in FINISH:
            store.append(run_id, [_finished(FINISH[run_id])])
    return store


def _groups(result: CostReport) -> dict[str, dict]:
    return {g["group"]: g for g in result.to_dict()["groups"]}


class TestCostReport:
    def test_cost_per_success_counts_failed_runs(self, filled):
        """alpha's 1.4375 USD over 3 runs buys 2 successes: 0.71875 each, the failure included."""
        alpha = _groups(cost_report(filled))["alpha"]
        assert alpha["cost_usd"] == 1.4375
        assert alpha["successes"] == 2
        assert alpha["cost_per_success_usd"] == 0.71875
        assert alpha["cost_per_resolution_usd"] == 1.4375
        assert alpha["cost_per_deflection_usd"] == 1.4375

    def test_cost_is_split_into_model_verification_and_tool(self, filled):
        """Acting turns, verifier turns and tool calls are summed apart."""
        alpha = _groups(cost_report(filled))["alpha"]
        assert (alpha["model_usd"], alpha["verification_usd"], alpha["tool_usd"]) == (
            0.875,
            0.0625,
            0.5,
        )
        assert (alpha["model_calls"], alpha["verification_calls"]) == (3, 1)

    def test_outcomes_and_rates_are_of_finished_runs(self, filled):
        """Outcomes follow the taxonomy; rates divide by finished runs, in-flight runs apart."""
        groups = _groups(cost_report(filled))
        alpha, beta = groups["alpha"], groups["beta"]
        assert alpha["outcomes"] == {
            "resolved": 1,
            "deflected": 1,
            "escalated": 0,
            "failed": 1,
            "budget_exceeded": 0,
            "killed": 0,
            "abandoned": 0,
        }
        assert (alpha["error_rate"], alpha["resolution_rate"]) == (1 / 3, 1 / 3)
        assert (beta["runs"], beta["finished"], beta["in_flight"]) == (2, 1, 1)
        assert (beta["escalation_rate"], beta["error_rate"]) == (1.0, 0.0)

    def test_no_success_is_null_not_zero(self, filled):
        """A group without a success has no cost per success, resolution or deflection."""
        beta = _groups(cost_report(filled))["beta"]
        assert beta["cost_usd"] == 0.1875
        assert beta["cost_per_success_usd"] is None
        assert beta["cost_per_resolution_usd"] is None
        assert beta["cost_per_deflection_usd"] is None

    def test_retries_failed_tools_and_cache_hits(self, filled):
        """Attempts beyond the first are retries; errored calls' cost and cached turns count."""
        groups = _groups(cost_report(filled))
        alpha = groups["alpha"]
        assert (alpha["retries"], alpha["retried_calls"]) == (2, 1)
        assert (alpha["failed_tool_calls"], alpha["failed_tool_usd"]) == (1, 0.25)
        assert (groups["beta"]["cache_hits"], alpha["cache_hits"]) == (1, 0)

    def test_groups_by_each_key(self, filled):
        """Each --by key gives its groups, largest spend first."""
        assert [g.group for g in cost_report(filled, by="agent").groups] == ["alpha", "beta"]
        by_version = [g.group for g in cost_report(filled, by="version").groups]
        assert by_version == ["alpha@1.0", "alpha@2.0", "beta@1.0"]
        by_tenant = {g.group: len(g.runs) for g in cost_report(filled, by="tenant").groups}
        assert by_tenant == {"acme": 3, "globex": 2}
        by_outcome = {g.group: g.total_usd for g in cost_report(filled, by="outcome").groups}
        assert by_outcome == {
            "failed": 0.75,
            "resolved": 0.4375,
            "deflected": 0.25,
            "escalated": 0.125,
            "in_flight": 0.0625,
        }

    def test_totals_cover_every_run(self, filled):
        """Totals are computed over all runs, not summed from the groups' ratios."""
        totals = cost_report(filled, by="version").to_dict()["totals"]
        assert (totals["runs"], totals["cost_usd"], totals["successes"]) == (5, 1.625, 2)
        assert totals["cost_per_success_usd"] == 0.8125
        assert (totals["finished"], totals["in_flight"]) == (4, 1)
        rates = ("error_rate", "escalation_rate", "resolution_rate", "deflection_rate")
        assert [totals[r] for r in rates] == [0.25, 0.25, 0.25, 0.25]
        assert (totals["approval_requests"], totals["approvals_per_run"]) == (1, 0.2)
        assert (totals["approvals_open"], totals["approval_wait_median_s"]) == (1, None)

    def test_since_keeps_later_runs(self, filled):
        """Runs started before --since are left out."""
        time.sleep(0.01)
        boundary = utcnow()
        filled.start_run("run_new", _started("gamma", "1.0", "acme"))
        filled.append("run_new", [_model(0.5), _finished("resolved")])
        result = cost_report(filled, since=boundary)
        assert [(g.group, len(g.runs)) for g in result.groups] == [("gamma", 1)]
        assert result.to_dict()["since"] == boundary.isoformat()
        assert len(cost_report(filled, since=boundary - timedelta(days=1)).totals.runs) == 6

    def test_limit_marks_the_report_truncated(self, filled):
        """Reading fewer runs than exist says so."""
        assert cost_report(filled, limit=2).truncated
        assert len(cost_report(filled, limit=2).totals.runs) == 2
        assert not cost_report(filled, limit=6).truncated

    def test_a_run_without_figures(self):
        """A run with no events beyond its start costs nothing and is in flight."""
        run = RunCosts(run_id="r", agent="a", contract_version="1", tenant_id="t", outcome=None)
        assert (run.total_usd, run.key("outcome"), run.key("version")) == (0.0, "in_flight", "a@1")

    def test_approval_wait_is_read_from_event_times(self, store):
        """The wait is the time between the request's and the decision's stored events."""
        store.start_run("run_w", _started("alpha", "1.0", "acme"))
        store.append("run_w", [_requested("apr_1")])
        time.sleep(0.05)
        store.append("run_w", [_decided("apr_1")])
        stamps = [datetime.fromisoformat(e.ts) for e in store.events("run_w")[1:]]
        expected = (stamps[1] - stamps[0]).total_seconds()
        figures = cost_report(store).totals.to_dict()
        assert expected >= 0.05
        assert figures["approval_wait_total_s"] == expected
        assert figures["approval_wait_median_s"] == expected
        assert figures["approvals_open"] == 0


class TestVerificationCost:
    def test_verifier_check_cost_counts_when_no_turn_records_it(self, store):
        """A `verifier` check whose detail has cost_usd is verification spend."""
        store.start_run("run_v", _started("alpha", "1.0", "acme"))
        store.append("run_v", [_model(0.5), _verifier_gate(0.125)])
        figures = cost_report(store).totals.to_dict()
        assert (figures["verification_usd"], figures["verification_calls"]) == (0.125, 1)
        assert figures["cost_usd"] == 0.625

    def test_a_rejudged_step_pays_its_verifier_again(self, store):
        """An approved step is judged afresh: its second verifier check is a second call."""
        store.start_run("run_v", _started("alpha", "1.0", "acme"))
        store.append("run_v", [_verifier_gate(0.125, decision="needs_approval")])
        store.append("run_v", [_verifier_gate(0.125)])
        figures = cost_report(store).totals.to_dict()
        assert (figures["verification_usd"], figures["verification_calls"]) == (0.25, 2)

    def test_verifier_turns_win_over_checks(self, store):
        """With verify turns in the log, the checks' costs are the same spend and not added."""
        store.start_run("run_v", _started("alpha", "1.0", "acme"))
        store.append("run_v", [_model(0.0625, purpose="verify", step=2), _verifier_gate(0.0625)])
        figures = cost_report(store).totals.to_dict()
        assert (figures["verification_usd"], figures["verification_calls"]) == (0.0625, 1)

    def test_steps_are_matched_one_by_one(self, store):
        """A verify turn stands in for its own step's check only, not for another step's."""
        store.start_run("run_v", _started("alpha", "1.0", "acme"))
        store.append("run_v", [_model(0.0625, purpose="verify", step=2), _verifier_gate(0.0625)])
        store.append("run_v", [_verifier_gate(0.125, step=4)])
        figures = cost_report(store).totals.to_dict()
        assert (figures["verification_usd"], figures["verification_calls"]) == (0.1875, 2)


def _stored(run_id: str, events: list[tuple[str, Event]]) -> tuple[RunRecord, list[StoredEvent]]:
    """Events as a store returns them, at the given times (no store can be told the time)."""
    started = _started("alpha", "1.0", "acme")
    stored = [
        StoredEvent(
            run_id=run_id,
            seq=i,
            ts=ts,
            kind=e.kind,
            data=e.model_dump_json(),
            prev_hash="",
            hash="",
        )
        for i, (ts, e) in enumerate([(events[0][0], started), *events])
    ]
    return RunRecord.starting(run_id=run_id, started=started, ts=events[0][0]), stored


class TestApprovalWaits:
    def test_total_and_median_wait(self):
        """Decided after 5 min, expired after 1 h, approved by the second of two after 1 min."""
        record, events = _stored(
            "run_1",
            [
                ("2026-03-01T10:00:00+00:00", _requested("apr_1")),
                ("2026-03-01T10:00:00+00:00", _requested("apr_2", step=3)),
                ("2026-03-01T10:05:00+00:00", _decided("apr_1")),
                (
                    "2026-03-01T11:00:00+00:00",
                    ApprovalExpired(step=3, request_id="apr_2", action="deny"),
                ),
                ("2026-03-01T12:00:00+00:00", _requested("apr_3", step=4)),
                ("2026-03-01T12:00:30+00:00", _decided("apr_3", status="pending", step=4)),
                ("2026-03-01T12:01:00+00:00", _decided("apr_3", step=4)),
                ("2026-03-01T12:30:00+00:00", _requested("apr_4", step=5)),
            ],
        )
        run = run_costs(record, events)
        assert sorted(run.approval_waits_s) == [60.0, 300.0, 3600.0]
        figures = group_runs([run], by="agent")[1].to_dict()
        assert (figures["approval_requests"], figures["approvals_open"]) == (4, 1)
        assert figures["approval_wait_total_s"] == 3960.0
        assert figures["approval_wait_median_s"] == 300.0


class TestSince:
    NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("24h", datetime(2026, 3, 7, 12, 0, tzinfo=UTC)),
            ("7d", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
            ("90m", datetime(2026, 3, 8, 10, 30, tzinfo=UTC)),
            ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
            ("2026-03-01T09:00+02:00", datetime(2026, 3, 1, 7, 0, tzinfo=UTC)),
        ],
    )
    def test_relative_and_absolute(self, text, expected):
        """Durations count back from now; a time without a zone is UTC."""
        assert parse_since(text, now=self.NOW) == expected

    def test_nonsense_is_a_user_error(self):
        """Neither a date nor a duration fails with a hint."""
        with pytest.raises(UserError, match="neither") as info:
            parse_since("last tuesday", now=self.NOW)
        assert "24h" in (info.value.hint or "")


class TestOutputs:
    def test_csv_header_and_row(self, filled):
        """One header of stable names, then one row per group, n/a as an empty cell."""
        lines = csv_text(cost_report(filled)).splitlines()
        header = lines[0].split(",")
        assert header[:12] == [
            "group",
            "runs",
            "in_flight",
            "finished",
            "resolved",
            "deflected",
            "escalated",
            "failed",
            "budget_exceeded",
            "killed",
            "abandoned",
            "successes",
        ]
        assert len(lines) == 3
        row = dict(zip(header, lines[2].split(","), strict=True))
        assert row["group"] == "beta"
        assert (row["cost_usd"], row["cost_per_success_usd"], row["escalated"]) == (
            "0.1875",
            "",
            "1",
        )

    def test_json_shape(self, filled):
        """An object with since, by, groups and totals; it survives a JSON round trip."""
        data = json.loads(json.dumps(cost_report(filled, by="tenant").to_dict()))
        assert set(data) == {"since", "by", "truncated", "groups", "totals"}
        assert (data["since"], data["by"], data["totals"]["group"]) == (None, "tenant", "total")
        assert set(data["groups"][0]) == set(data["totals"])

    def test_table_fits_100_columns(self, filled):
        """The table's longest line fits 100 columns with a long group name unbroken."""
        filled.start_run("run_long", _started("billing-dispute-agent", "2026.11.1", "acme"))
        out = Console(file=io.StringIO(), width=100, color_system=None)
        out.print(cost_table(cost_report(filled, by="version")))
        text = out.file.getvalue()
        assert max(len(line) for line in text.splitlines()) <= 100
        assert "billing-dispute-agent@2026.11.1" in text
        assert "$0.8125" in text
        assert "…" not in text

    def test_png_is_a_png(self, filled, tmp_path):
        """The chart is written as a PNG file."""
        path = tmp_path / "costs.png"
        write_png(cost_report(filled, by="version"), path)
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 1000

    @pytest.mark.backends("sqlite")
    def test_png_of_an_empty_report(self, store, tmp_path):
        """No runs still draws a chart, without warnings."""
        path = tmp_path / "empty.png"
        write_png(cost_report(store), path)
        assert path.read_bytes().startswith(PNG_SIGNATURE)

    @pytest.mark.backends("sqlite")
    def test_png_into_a_missing_folder_is_a_user_error(self, store, tmp_path):
        """A chart path that cannot be written fails typed, not with a traceback."""
        with pytest.raises(UserError, match="cannot write the chart"):
            write_png(cost_report(store), tmp_path / "missing" / "x.png")

    @pytest.mark.backends("sqlite")
    def test_png_without_matplotlib_says_what_to_install(self, store, tmp_path, monkeypatch):
        """Without the charts extra, --png fails with the pip hint."""
        monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
        with pytest.raises(ConfigError) as info:
            write_png(cost_report(store), tmp_path / "x.png")
        assert info.value.hint == "pip install 'charter[charts]'"


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home the demo has run in once."""
    home = tmp_path_factory.mktemp("report") / "home"
    result = CliRunner().invoke(cli, ["--home", str(home), "demo", "--json"])
    assert result.exit_code == 0, result.output
    return home


def _report(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(report, ["costs", *args], obj={"home": home})
    return result.exit_code, result.output


class TestCommand:
    def test_demo_costs_match_the_runs(self, demo_home):
        """The demo's runs: one agent, ten runs, the cost the run records add up to."""
        code, output = _report(demo_home, "--json")
        assert code == 0, output
        data = json.loads(output)
        listed = json.loads(
            CliRunner().invoke(cli, ["--home", str(demo_home), "runs", "list", "--json"]).output
        )
        (group,) = data["groups"]
        assert group["group"] == "billing-dispute-agent"
        assert group["runs"] == len(listed) == 10
        assert group["in_flight"] == sum(1 for r in listed if r["status"] == "waiting")
        assert group["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in listed), rel=1e-12)
        assert group["outcomes"]["resolved"] == sum(1 for r in listed if r["outcome"] == "resolved")

    def test_formats(self, demo_home, tmp_path):
        """Table, CSV by version and a PNG from one command line each."""
        code, table = _report(demo_home)
        assert code == 0, table
        assert "Costs by agent" in table
        assert "2 run(s) in flight" in table
        code, text = _report(demo_home, "--by", "version", "--format", "csv")
        assert code == 0, text
        lines = text.splitlines()
        assert len(lines) == 2
        assert lines[1].startswith("billing-dispute-agent@")
        png = tmp_path / "chart.png"
        code, output = _report(demo_home, "--since", "1h", "--png", str(png), "--json")
        assert code == 0, output
        assert png.read_bytes().startswith(PNG_SIGNATURE)

    def test_since_in_the_future_is_empty(self, demo_home):
        """A window after every run has no groups and zero totals."""
        code, output = _report(demo_home, "--since", "2999-01-01", "--format", "json")
        assert code == 0, output
        data = json.loads(output)
        assert (data["groups"], data["totals"]["runs"]) == ([], 0)
        assert data["since"] == "2999-01-01T00:00:00+00:00"
        code, table = _report(demo_home, "--since", "2999-01-01T02:00+02:00")
        assert "since 2999-01-01 00:00 UTC" in table

    def test_bad_input_exits_2_with_the_error_envelope(self, demo_home):
        """A bad --since, or --json against --format csv, is a user error."""
        code, output = _report(demo_home, "--since", "soon", "--json")
        assert (code, json.loads(output)["error"]["code"]) == (2, "user_error")
        code, output = _report(demo_home, "--json", "--format", "csv")
        assert (code, json.loads(output)["error"]["code"]) == (2, "user_error")
