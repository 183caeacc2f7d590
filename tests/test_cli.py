"""The `charter` command, end to end through click's runner, on a real SQLite home."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from charter.cli import cli
from charter.examples import BILLING

EXAMPLES = BILLING.parent


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def invoke(home: Path, *args: str, token: str | None = None) -> tuple[int, str]:
    env = {"CHARTER_TOKEN": token} if token else {}
    result = CliRunner().invoke(cli, ["--home", str(home), *args], env=env)
    return result.exit_code, result.output


@pytest.fixture
def demo_home(home: Path) -> Path:
    code, output = invoke(home, "demo", "--json")
    assert code == 0, output
    return home


class TestDemo:
    def test_demo_contains_the_injection_and_holds_large_refunds(self, home: Path) -> None:
        """The demo executes small refunds, holds large ones and lets no refund cross tenants."""
        code, output = invoke(home, "demo", "--json")
        assert code == 0, output
        report = json.loads(output)
        outcomes = [r["outcome"] for r in report["runs"]]
        assert len(report["runs"]) == 10
        assert outcomes.count("pending") == 2
        assert report["foreign_refunds"] == 0
        assert report["injection_target_refunds"] == 0
        assert report["refunds_executed"] == 5
        assert report["chains_broken"] == 0

    def test_demo_table_names_next_commands(self, home: Path) -> None:
        """The demo ends with the log's place and next commands that carry the --home given."""
        code, output = invoke(home, "demo")
        assert code == 0, output
        flat = " ".join(output.split())
        assert f"--home {home} audit verify" in flat
        assert f"--home {home} runs export" in flat
        assert "scripted:billing-demo" in output

    def test_demo_runs_twice_on_one_home(self, demo_home: Path) -> None:
        """A second demo makes its store anew: ten runs again, a new admin, all verified."""
        _, before = invoke(demo_home, "identity", "list", "--json")
        code, output = invoke(demo_home, "demo", "--json")
        assert code == 0, output
        assert json.loads(output)["chains_broken"] == 0
        code, listing = invoke(demo_home, "runs", "list", "--json")
        assert len(json.loads(listing)) == 10
        _, after = invoke(demo_home, "identity", "list", "--json")
        assert not {i["id"] for i in json.loads(before)} & {i["id"] for i in json.loads(after)}

    def test_demo_refuses_a_store_it_did_not_make(self, home: Path) -> None:
        """On a store with an admin of its own the demo refuses (exit 2) and changes nothing."""
        code, _ = invoke(home, "init")
        assert code == 0
        code, output = invoke(home, "demo", "--json")
        assert code == 2, output
        assert json.loads(output)["error"]["code"] == "invalid_state"
        _, listing = invoke(home, "identity", "list", "--json")
        assert [i["name"] for i in json.loads(listing)] == ["admin"]


class TestRuns:
    def test_list_filters_by_status(self, demo_home: Path) -> None:
        """`runs list --status waiting` shows only runs held for approval."""
        code, output = invoke(demo_home, "runs", "list", "--status", "waiting", "--json")
        assert code == 0
        runs = json.loads(output)
        assert {r["status"] for r in runs} == {"waiting"}
        assert len(runs) == 2

    def test_show_is_a_timeline_with_every_stage(self, demo_home: Path) -> None:
        """`runs show` prints each check of the gate for each step."""
        _, output = invoke(demo_home, "runs", "list", "--status", "waiting", "--json")
        run_id = json.loads(output)[0]["run_id"]
        code, shown = invoke(demo_home, "runs", "show", run_id)
        assert code == 0
        for stage in ("kill_switch", "principal", "grant", "schema", "policy", "budget"):
            assert stage in shown
        assert "needs_approval" in shown

    def test_export_is_the_run_record(self, demo_home: Path) -> None:
        """`runs export --format jsonl` prints one JSON line with the record's fields."""
        _, output = invoke(demo_home, "runs", "list", "--status", "waiting", "--json")
        run_id = json.loads(output)[0]["run_id"]
        code, exported = invoke(demo_home, "runs", "export", run_id, "--format", "jsonl")
        assert code == 0
        lines = exported.strip().splitlines()
        assert len(lines) == 1
        record = json.loads(lines[0])
        for key in ("run_id", "agent", "tenant_id", "model", "budget_usd", "tool_calls"):
            assert key in record
        assert record["approvals"][0] == {**record["approvals"][0], "required": 1, "approved": 0}
        assert record["outcome"]["status"] == "pending"
        assert set(record["cost"]) == {"prompt_tokens", "completion_tokens", "usd"}
        assert set(record["tool_calls"][0]) >= {"tool", "input_hash", "status", "latency_ms"}

    def test_unknown_run_is_a_typed_error(self, demo_home: Path) -> None:
        """An unknown run id exits 2 with the not_found code and a hint."""
        code, output = invoke(demo_home, "runs", "show", "run_nope", "--json")
        assert code == 2
        assert json.loads(output)["error"]["code"] == "not_found"


class TestAudit:
    def test_verify_passes_on_an_untouched_log(self, demo_home: Path) -> None:
        """`audit verify` exits 0 and counts every event."""
        code, output = invoke(demo_home, "audit", "verify", "--json")
        assert code == 0
        assert json.loads(output)["broken"] == 0

    def test_verify_reports_the_first_broken_link(self, demo_home: Path) -> None:
        """An edit made directly in the database file is reported with its run and event."""
        db = sqlite3.connect(demo_home / "charter.db")
        db.execute("DROP TRIGGER events_append_only_update")
        run_id, seq = db.execute(
            "SELECT run_id, seq FROM events WHERE kind = 'gate.decided' LIMIT 1"
        ).fetchone()
        db.execute(
            "UPDATE events SET payload = replace(payload, 'denied', 'allowed') "
            "WHERE run_id = ? AND seq = ?",
            (run_id, seq),
        )
        db.execute(
            "UPDATE events SET payload = replace(payload, 'needs_approval', 'allowed') "
            "WHERE run_id = ? AND seq = ?",
            (run_id, seq),
        )
        db.execute(
            "UPDATE events SET payload = payload || ' ' WHERE run_id = ? AND seq = ?",
            (run_id, seq),
        )
        db.commit()
        db.close()
        code, output = invoke(demo_home, "audit", "verify")
        assert code == 1
        assert f"BROKEN {run_id} at event {seq}" in output


class TestContractAndPolicy:
    def test_validate_prints_the_hash(self, home: Path) -> None:
        """`contract validate` accepts the example and prints its hash."""
        code, output = invoke(
            home, "contract", "validate", str(BILLING / "contract.yaml"), "--json"
        )
        assert code == 0
        assert len(json.loads(output)["contract_hash"]) == 64

    def test_validate_names_file_and_key_path(self, home: Path, tmp_path: Path) -> None:
        """A misspelt key exits 2 and names the file and the key path."""
        bad = tmp_path / "bad.yaml"
        text = (BILLING / "contract.yaml").read_text().replace("effect: read", "efect: read", 1)
        bad.write_text(text)
        code, output = invoke(home, "contract", "validate", str(bad))
        assert code == 2
        assert "bad.yaml" in output
        assert "tools.lookup_charge.efect" in output

    @pytest.mark.parametrize("example", ["billing", "deploys", "support"])
    def test_every_example_policy_table_passes(self, home: Path, example: str) -> None:
        """Each example ships a policy table that passes."""
        code, output = invoke(home, "policy", "test", str(EXAMPLES / example / "cases.yaml"))
        assert code == 0, output
        assert " 0 failed" in output

    def test_policy_test_fails_on_a_mismatch(self, home: Path, tmp_path: Path) -> None:
        """A case expecting the wrong decision makes `policy test` exit 1."""
        cases = (BILLING / "cases.yaml").read_text().replace("expect: allow", "expect: deny", 1)
        folder = tmp_path / "copy"
        folder.mkdir()
        for name in ("contract.yaml", "policies.cedar", "schema.cedarschema"):
            (folder / name).write_text((BILLING / name).read_text())
        (folder / "cases.yaml").write_text(cases)
        code, output = invoke(home, "policy", "test", str(folder / "cases.yaml"), "--json")
        assert code == 1
        assert json.loads(output)["failed"] == 1


class TestIdentity:
    @pytest.fixture
    def admin(self, home: Path) -> str:
        """The admin token `charter init` prints once."""
        code, output = invoke(home, "init", "--json")
        assert code == 0, output
        return str(json.loads(output)["token"])

    def test_create_shows_token_once_and_list_never(self, home: Path, admin: str) -> None:
        """The token is printed at creation and absent from `identity list`."""
        agent = ("--agent", "a", "--workflow", "w", "--tenant", "t", "--reason", "new agent")
        code, output = invoke(home, "identity", "create", *agent, "--json", token=admin)
        assert code == 0, output
        token = json.loads(output)["token"]
        assert token.startswith("chr_")
        code, listing = invoke(home, "identity", "list", "--json")
        assert token not in listing
        assert admin not in listing
        assert [i["tenant_id"] for i in json.loads(listing)] == [None, "t"]

    def test_revoke_hides_from_default_list(self, home: Path, admin: str) -> None:
        """A revoked identity is listed only with --all."""
        person = ("--human", "dana", "--role", "approver", "--reason", "new approver")
        _, output = invoke(home, "identity", "create", *person, "--json", token=admin)
        identity_id = json.loads(output)["identity"]["id"]
        code, _ = invoke(home, "identity", "revoke", identity_id, "--reason", "left", token=admin)
        assert code == 0
        _, active = invoke(home, "identity", "list", "--json")
        _, everyone = invoke(home, "identity", "list", "--all", "--json")
        assert identity_id not in active
        (revoked,) = [i for i in json.loads(everyone) if i["id"] == identity_id]
        assert revoked["revoked_at"]

    def test_unknown_role_is_a_user_error(self, home: Path, admin: str) -> None:
        """A role outside admin/approver/operator/auditor exits 2 with a hint."""
        code, output = invoke(
            home,
            "identity",
            "create",
            "--human",
            "x",
            "--role",
            "root",
            "--reason",
            "r",
            token=admin,
        )
        assert code == 2
        assert "approver" in output


class TestDocumented:
    def test_every_command_is_in_the_readme(self) -> None:
        """Each `charter` command appears in the README's command table."""
        readme = (Path(__file__).parent.parent / "README.md").read_text()

        def walk(group: click.Group, prefix: str) -> list[str]:
            found = []
            for name, command in group.commands.items():
                path = f"{prefix} {name}"
                if isinstance(command, click.Group):
                    found.extend(walk(command, path))
                else:
                    found.append(path)
            return found

        missing = [path for path in walk(cli, "charter") if f"`{path}" not in readme]
        assert missing == []
