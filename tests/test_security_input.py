"""Regressions of five findings about bad input, one test each.

1. Tool arguments had no size limit: three 10 MB calls left a 240 MB database.
2. A contract could name any file as its policies, and `charter policy test` printed its first line.
3. `charter contract validate` said ok for a contract whose Cedar file was broken or missing.
4. Bad files and a bad `--app` ended in a traceback (an internal error), not a typed error.
5. A secret proposed as a tool name, or as an argument's key, was written in clear: in the log,
   the span names and the CLI's timelines.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from charter import Agent, ControlPlane
from charter._decision import Denied
from charter._telemetry import Telemetry
from charter.cli import cli
from charter.engine import Workflow
from charter.gate import Executor
from charter.models import Message, ScriptedModel, ScriptedTurn
from charter.privacy import LocalKeyring, Redactor

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import Result

    from charter.engine import Context
    from charter.store import SqlStore

MB = 1024 * 1024
GITHUB_TOKEN = "ghp_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6"
"""A GitHub token's shape: `ghp_` and 36 letters and digits."""
AWS_KEY_ID = "AKIA" + "Q3EXAMPLE7KEYID2"
"""An AWS access key id's shape: `AKIA` and 16 capitals and digits."""
PLANTED = "root:PLANTED-SECRET-4f9c2e:19000:0:99999:7:::"
"""A line of a file the contract must not read, let alone echo."""


def _home(tmp_path: Path, store: SqlStore) -> Path:
    """A Charter home whose seal key and keyring are the store's, as a node of it holds them."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "seal.key").write_text(store.seal_key.hex())
    assert isinstance(store.keys, LocalKeyring)
    (home / "keyring.json").symlink_to(store.keys.path)
    return home


def _cli(home: Path, database_url: str, *args: str, **env: str) -> Result:
    return CliRunner().invoke(
        cli, ["--home", str(home), *args], env={"CHARTER_DATABASE_URL": database_url, **env}
    )


def _sqlite(tmp_path: Path) -> str:
    """A database for commands that must fail before they use one."""
    return f"sqlite://{tmp_path / 'charter.db'}"


def _error(result: Result) -> dict[str, Any]:
    """The JSON error envelope of a failed command; never a traceback."""
    assert "Traceback" not in result.output
    error: dict[str, Any] = json.loads(result.stdout)["error"]
    return error


class TestArgumentSize:
    @pytest.mark.backends("sqlite")
    def test_three_10mb_calls_leave_a_small_database_and_are_each_denied(
        self, plane, store, cred, make_contract, toolset, tmp_path
    ):
        """Three 10 MB calls proposed by a model, and three made by a workflow through
        ctx.tool, are each denied at input_size; the database and its WAL stay under 2 MB and
        both runs' chains verify."""
        big = {"item": "x" * (10 * MB)}
        model = ScriptedModel(
            [ScriptedTurn(calls=(("record_write", big),) * 3), ScriptedTurn.say("done")]
        )
        agent = Agent.load(make_contract(), tools=toolset.tools, model=model)
        looped = plane.run(agent, credential=cred.token, tenant_id="acme", task="write it")

        def direct(ctx: Context, task: Any) -> str:
            return ", ".join(ctx.tool("record_write", big).kind for _ in range(3))

        workflow = Workflow(agent=agent, fn=direct)
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task="go")
        called = plane.resume(run_id, workflow)

        decisions = [*looped.decisions, *called.decisions]
        assert [(d.kind, getattr(d, "check", None)) for d in decisions] == [
            ("denied", "input_size")
        ] * 6
        assert toolset.effects == []
        assert all(r.ok for r in store.verify())
        files = [tmp_path / "charter.db", tmp_path / "charter.db-wal"]
        assert sum(f.stat().st_size for f in files if f.exists()) < 2 * MB


class TestConfinedPaths:
    def test_a_policy_path_outside_the_contract_is_refused_and_never_echoed(
        self, make_contract, tmp_path
    ):
        """A contract whose policies lead outside its folder fails `policy test` and `contract
        validate` as contract_invalid; the file's planted line is in no output."""
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "shadow").write_text(PLANTED + "\n")
        contract = make_contract(
            policy={"policies": "../outside/shadow", "schema": "schema.cedarschema"}
        )
        cases = contract.parent / "cases.yaml"
        case = {
            "name": "n",
            "principal": {"agent": "a", "workflow": "w", "tenant": "t"},
            "action": "x",
            "resource": {"type": "T", "id": "i"},
            "expect": "deny",
        }
        cases.write_text(json.dumps({"contract": "contract.yaml", "cases": [case]}))
        home = tmp_path / "home"
        for args in (("policy", "test", str(cases)), ("contract", "validate", str(contract))):
            plain = _cli(home, _sqlite(tmp_path), *args)
            as_json = _cli(home, _sqlite(tmp_path), *args, "--json")
            assert (plain.exit_code, as_json.exit_code) == (2, 2)
            assert _error(as_json)["code"] == "contract_invalid"
            assert "policy.policies" in _error(as_json)["message"]
            for result in (plain, as_json):
                assert "PLANTED-SECRET" not in result.stdout + result.stderr


class TestValidatePolicies:
    @pytest.mark.parametrize(
        "policies",
        [
            "permit (principal, action, resource) when { nonsense };\n",
            None,
            '{"not": "cedar at all"}\n',
        ],
        ids=["malformed", "missing", "not-cedar"],
    )
    def test_contract_validate_refuses_a_broken_policy_file(
        self, policies, make_contract, tmp_path
    ):
        """A malformed, missing or non-Cedar policy file fails `contract validate` with
        policy_invalid, exit 2."""
        contract = make_contract()
        target = contract.parent / "policies.cedar"
        if policies is None:
            target.unlink()
        else:
            target.write_text(policies)
        result = _cli(
            tmp_path / "home", _sqlite(tmp_path), "contract", "validate", str(contract), "--json"
        )
        assert result.exit_code == 2
        assert _error(result)["code"] == "policy_invalid"


class TestNoTraceback:
    @pytest.mark.parametrize(
        ("args", "code"),
        [
            (("contract", "validate", "{garbage}"), "contract_invalid"),
            (("contract", "validate", "{nested}"), "contract_invalid"),
            (("retention", "apply", "--contract", "{garbage}"), "contract_invalid"),
            (("worker", "--app", "os:system", "--until-idle"), "config_invalid"),
        ],
        ids=["binary-contract", "nested-contract", "retention-garbage", "worker-os-system"],
    )
    def test_bad_files_and_apps_are_typed_errors(self, args, code, tmp_path):
        """Binary garbage, 5,000 nested brackets and `--app os:system` are refused with their
        typed error and exit 2, never an internal error."""
        garbage = tmp_path / "garbage.yaml"
        garbage.write_bytes(bytes(range(128, 256)) * 64)
        nested = tmp_path / "nested.yaml"
        nested.write_text("[" * 5000)
        filled = [a.format(garbage=garbage, nested=nested) for a in args]
        result = _cli(tmp_path / "home", _sqlite(tmp_path), *filled, "--json")
        assert result.exit_code == 2, result.output
        assert _error(result)["code"] == code


SECRET_CALLS = ScriptedTurn(
    calls=((GITHUB_TOKEN, {AWS_KEY_ID: "x"}), ("record_write", {"item": "x", AWS_KEY_ID: "y"}))
)
"""A model proposing a tool named like a GitHub token, and a granted tool, each with an
argument keyed by an AWS key id."""


def propose_then_sleep(ctx: Context, task: Any) -> str:
    """Ask the model once, pass each call it proposes to the gate, then sleep a minute."""
    response = ctx.model([Message(role="user", content=str(task))])
    decided = [ctx.tool(c.tool, c.arguments, call_id=c.call_id) for c in response.tool_calls]
    ctx.sleep(60)
    return ", ".join(d.kind for d in decided)


def secret_workflows(config: Any) -> list[Workflow]:
    """`--app test_security_input:secret_workflows`: the workflow, under $SECRET_APP_CONTRACT."""
    import os  # noqa: PLC0415 - read when the CLI calls the factory, never at import

    from _factories import Toolset  # noqa: PLC0415

    del config
    model = ScriptedModel([SECRET_CALLS])
    agent = Agent.load(os.environ["SECRET_APP_CONTRACT"], tools=Toolset().tools, model=model)
    return [Workflow(agent=agent, fn=propose_then_sleep)]


class TestSecretToolNames:
    @pytest.mark.backends("sqlite")
    def test_a_secret_tool_name_or_argument_key_is_written_nowhere(
        self, store, cred, make_contract, toolset, clock, tmp_path, database_url
    ):
        """A tool named like a GitHub token, and argument keys like AWS key ids, are in no
        event, not in the database file, no span, nor `runs show` or `explain`; the unknown
        tool is denied at grant, and the run resumes and replays with no nondeterminism."""
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        plane = ControlPlane(
            store,
            clock=clock,
            executor=Executor(sleep=lambda s: None),
            telemetry=Telemetry(tracer_provider=provider),
        )
        contract = make_contract()
        agent = Agent.load(contract, tools=toolset.tools, model=ScriptedModel([SECRET_CALLS]))
        workflow = Workflow(agent=agent, fn=propose_then_sleep)
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task="go")
        first = plane.resume(run_id, workflow)
        clock.advance(seconds=61)
        done = plane.resume(run_id, workflow)
        plane.close()
        assert (first.status, done.status, done.reason) == (
            "waiting",
            "completed",
            "denied, allowed",
        )
        assert [d.check for d in first.decisions if isinstance(d, Denied)] == ["grant"]

        home = _home(tmp_path, store)
        app = {"SECRET_APP_CONTRACT": str(contract)}
        shown = [
            _cli(home, database_url, *args, **app)
            for args in (
                ("runs", "show", run_id),
                ("runs", "show", run_id, "--json"),
                ("explain", run_id),
                ("explain", run_id, "--json"),
                ("replay", run_id, "--app", "test_security_input:secret_workflows", "--json"),
            )
        ]
        assert [r.exit_code for r in shown] == [0] * 5, [r.output for r in shown]
        assert json.loads(shown[-1].stdout)["ok"] is True
        marker = Redactor().text(GITHUB_TOKEN)
        assert f"proposes {marker}" in shown[0].stdout
        events = json.dumps([e.payload for e in store.events(run_id)])
        stored = b"".join(f.read_bytes() for f in tmp_path.glob("charter.db*")).decode("latin-1")
        exported = "\n".join(s.to_json() for s in spans.get_finished_spans())
        assert f"execute_tool {marker}" in exported
        for where, text in [("events", events), ("database", stored), ("spans", exported)] + [
            (f"cli {i}", r.stdout + r.stderr) for i, r in enumerate(shown)
        ]:
            assert GITHUB_TOKEN not in text, where
            assert AWS_KEY_ID not in text, where
