"""The artifact cache, end to end on a real store (both backends).

* Model steps: a labelled step with a `cache:` rule is answered from the cache for the very same
  question (model, conversation, tools, agent, workflow, tenant) at zero cost and tokens, with
  no budget reservation; anything else is a miss, and one tenant never gets another's answer.
* TTL: an entry past its TTL is a miss and is refreshed.
* Read tools: an identical call is answered from the cache (the tool is not executed, no
  rate-limit token is taken), yet the gate still judges it: kill switches, policy and
  approvals apply to a cached answer as to any call.
* The contract: only granted read tools can be cached; a rule names one label or one tool.
* At rest: values are sealed (their plaintext is not in the database file); an altered or
  moved value is a miss, never an error.
* Replay and resume of runs whose steps were cache hits need no cache.
* The CLI: `charter cache list` (no values) and `charter cache clear` (operators only, scoped,
  `--expired`), and the cost report's `cache_hits`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pytest

from _cli import Home, acts, as_json, invoke, make_home
from charter import Agent, Allowed, Client, Config, Denied, NeedsApproval
from charter._contract import load_contract
from charter._identity import create_agent_identity
from charter._report import run_costs
from charter.engine import Worker, Workflow, replay_run
from charter.exceptions import ContractError, LeaseLost
from charter.models import Message, ScriptedModel, ScriptedTurn
from charter.store import KillSwitch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from click.testing import Result

    from charter import ControlPlane, RunResult, Tool, ToolContext
    from charter.engine import Context
    from charter.models import ModelResponse, ToolSpec
    from charter.store import SqlStore

ONE_HOUR = [{"label": "classify", "ttl": "1h"}, {"tool": "read_notes", "ttl": "1h"}]
"""Cache rules: the `classify` model step and the `read_notes` tool, for an hour."""

MODEL_ANSWER = "sk_live_CachedModelAnswer42"
"""A model answer that redaction removes from events: only sealed copies may hold it."""
TOOL_ANSWER = "sk_test_CachedToolAnswer77"
"""The same, for a tool's output."""


# --- a counting model and a counting read tool -----------------------------------------------
class Counted:
    """A priced model answering every conversation with `text` (default `<name> answer N`, N
    counting its answers), counting how often it is asked."""

    def __init__(
        self,
        *,
        name: str = "big",
        text: str | None = None,
        price_in: float = 100.0,
        price_out: float = 100.0,
    ) -> None:
        self.asked = 0
        self.text = text
        self._inner = ScriptedModel(
            self._turn, name=name, usd_per_mtok_in=price_in, usd_per_mtok_out=price_out
        )

    def _turn(self, messages: list[Message]) -> ScriptedTurn:
        return ScriptedTurn.say(self.text or f"{self.name} answer {self.asked}")

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def kind(self) -> Literal["scripted"]:
        return "scripted"

    def respond(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        self.asked += 1
        return self._inner.respond(messages, tools)

    def estimate_usd(self, messages: list[Message], tools: list[ToolSpec]) -> float:
        return self._inner.estimate_usd(messages, tools)


@dataclass
class Notes:
    """Counts the real executions of `read_notes`, which answers `<item>:<suffix>`."""

    suffix: str = "note"
    runs: list[str] = field(default_factory=list)
    """The item of every execution, in order."""

    def counting(self, tool: Tool[Any, Any]) -> Tool[Any, Any]:
        """`tool` (conftest's `read_notes`: its input and output models, effect read) run by
        this counter, at $0.002 a call."""

        def read(args: Any, ctx: ToolContext) -> Any:
            self.runs.append(args.item)
            return tool.output_model(item=f"{args.item}:{self.suffix}")

        return dataclasses.replace(tool, run=read, cost_usd=0.002)


# --- workflows --------------------------------------------------------------------------------
def classify(ctx: Context, task: dict[str, Any]) -> str:
    """Optionally a paid write first (`spend`), then one model step over `text` with `label`
    (default `classify`); the run ends with the answer."""
    if task.get("spend"):
        ctx.tool("record_write", {"item": "paid"})
    messages = [Message(role="user", content=task["text"])]
    return ctx.model(messages, label=task.get("label", "classify")).text


def lookups(ctx: Context, task: list[str]) -> str:
    """`read_notes` of each item in turn; ends with each output (or decision kind)."""
    seen = []
    for item in task:
        decision = ctx.tool("read_notes", {"item": item})
        seen.append(decision.output["item"] if isinstance(decision, Allowed) else decision.kind)
    return " | ".join(seen)


def spend_then_read(ctx: Context, task: dict[str, Any]) -> str:
    """A paid write first if `spend`, then `lookups` of `items`."""
    if task.get("spend"):
        ctx.tool("record_write", {"item": "paid"})
    return lookups(ctx, task["items"])


def triage(ctx: Context, task: str) -> str:
    """A cached model step whose answer is the argument of a cached read."""
    answer = ctx.model([Message(role="user", content=task)], label="classify").text
    notes = ctx.tool("read_notes", {"item": answer})
    assert isinstance(notes, Allowed)
    return notes.output["item"]


def classify_then_wait(ctx: Context, task: str) -> str:
    """A cached model step, then a durable one-minute timer; ends with the answer."""
    answer = ctx.model([Message(role="user", content=task)], label="classify").text
    ctx.sleep(60)
    return answer


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def notes() -> Notes:
    return Notes()


@pytest.fixture
def tools(toolset, notes) -> list[Tool[Any, Any]]:
    """`Toolset`'s tools, with `read_notes` counted by `notes`."""
    return [notes.counting(t) if t.name == "read_notes" else t for t in toolset.tools]


@pytest.fixture
def build(make_contract, contract_data, tools) -> Callable[..., Agent]:
    """An agent with `model` (default: a fresh `Counted`), under `CONTRACT` with `top` keys
    replaced (`cache=` defaults to `ONE_HOUR`); `extra_policies` are added to its policy."""

    def build(model: Any = None, *, extra_policies: str = "", **top: Any) -> Agent:
        top.setdefault("cache", ONE_HOUR)
        return Agent.load(
            make_contract({**contract_data, **top}, extra_policies=extra_policies),
            tools=tools,
            model=model or Counted(),
        )

    return build


@pytest.fixture
def go(plane: ControlPlane, creds: dict[str, str]) -> Callable[..., RunResult]:
    """Start a run of `workflow` for a tenant and run it here until it rests; its log must
    verify."""

    def go(workflow: Workflow, task: Any, *, tenant: str = "acme") -> RunResult:
        run_id = plane.start(workflow, credential=creds[tenant], tenant_id=tenant, task=task)
        result = plane.resume(run_id, workflow)
        assert [r.ok for r in plane.store.verify(run_id)] == [True]
        return result

    return go


@pytest.fixture
def home(tmp_path: Path, database_url: str, store: SqlStore) -> Home:
    """A home whose seal key is `store`'s, with operator oscar and approver bob."""
    return make_home(tmp_path / "home", database_url, store)


@pytest.fixture
def client(home: Home) -> Iterator[Client]:
    """A client on `store`'s database, with its seal key."""
    config = Config.from_env({"CHARTER_DATABASE_URL": home.database_url}, home=home.path)
    with Client(config) as opened:
        yield opened


# --- helpers ----------------------------------------------------------------------------------
def listed(home: Home, *scope: str) -> list[dict[str, Any]]:
    """`charter cache list --json`."""
    return as_json(invoke(home, "cache", "list", *scope, "--json"))


def clear(home: Home, *args: str, who: str = "oscar") -> Result:
    """`charter cache clear ARGS --as WHO --json` with WHO's credential."""
    return invoke(
        home,
        "cache",
        "clear",
        *args,
        "--as",
        who,
        "--reason",
        "stale answers, INC-7",
        "--json",
        token=home.tokens[who],
    )


def _events(store: SqlStore, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in store.events(run_id) if e.kind == kind]


def _answer(store: SqlStore, run_id: str) -> dict[str, Any]:
    """The run's one model.responded event."""
    (answer,) = _events(store, run_id, "model.responded")
    return answer


def _check(decided: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in decided["checks"] if c["check"] == name]
    return found


def _switch(**scope: str) -> KillSwitch:
    return KillSwitch(**scope, reason="incident", created_by="sre", created_at="now")


def _flip_a_byte(raw_db, key: str) -> None:
    """Alter one byte of the sealed value under `key`, as a tamperer with write access would."""
    (value,) = raw_db.execute("SELECT value FROM artifact_cache WHERE key = ?", (key,)).fetchone()
    altered = bytearray(bytes(value))
    altered[len(altered) // 2] ^= 0x01
    raw_db.execute("UPDATE artifact_cache SET value = ? WHERE key = ?", (bytes(altered), key))


# --- model steps ------------------------------------------------------------------------------
class TestModelSteps:
    def test_the_same_question_is_answered_from_the_cache(self, build, go, store, home):
        """A second run asking the same labelled question is answered from the cache: the
        model is asked once in all; the second run's step is recorded cached, from the first
        run's step, at zero cost and tokens; the run cost nothing; reports count the hit."""
        model = Counted()
        workflow = Workflow(agent=build(model), fn=classify)
        first = go(workflow, {"text": "is this spam?"})
        second = go(workflow, {"text": "is this spam?"})

        assert model.asked == 1
        assert (second.status, second.outcome) == ("completed", "resolved")
        assert second.reason == first.reason == "scripted:big answer 1"
        produced, reused = _answer(store, first.run_id), _answer(store, second.run_id)
        assert produced["cached"] is False
        assert produced["cost_usd"] > 0
        assert produced["prompt_tokens"] > 0
        assert reused["cached"] is True
        assert reused["cached_from"] == f"{first.run_id}/1"
        assert (reused["cost_usd"], reused["prompt_tokens"], reused["completion_tokens"]) == (
            0,
            0,
            0,
        )
        assert (reused["model"], reused["text"]) == (produced["model"], produced["text"])
        assert store.get_run(first.run_id).cost_usd > 0
        assert store.get_run(second.run_id).cost_usd == 0

        costs = {
            r: run_costs(store.get_run(r), store.events(r)) for r in (first.run_id, second.run_id)
        }
        assert (costs[first.run_id].cache_hits, costs[first.run_id].model_usd > 0) == (0, True)
        assert (costs[second.run_id].cache_hits, costs[second.run_id].model_usd) == (1, 0)
        totals = as_json(invoke(home, "report", "costs", "--json"))["totals"]
        assert (totals["runs"], totals["cache_hits"], totals["model_usd"] > 0) == (2, 1, True)

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"text": "is this ham?"}, id="other-conversation"),
            pytest.param({"label": "summarise"}, id="label-without-rule"),
        ],
    )
    def test_another_question_is_a_miss(self, build, go, store, change):
        """Another conversation, or a label no rule names, asks the model again; only the
        cached label's questions are kept."""
        model = Counted()
        workflow = Workflow(agent=build(model), fn=classify)
        go(workflow, {"text": "is this spam?"})
        other = go(workflow, {"text": "is this spam?", **change})
        assert model.asked == 2
        assert _answer(store, other.run_id)["cached"] is False
        assert other.reason == "scripted:big answer 2"
        expected = 1 if "label" in change else 2
        assert [e.name for e in store.cache_entries()] == ["classify"] * expected

    def test_another_model_is_a_miss(self, build, go, store):
        """The model is part of the key: the same question to another model asks it; each
        model's answer is then reused for its own runs."""
        big, small = Counted(name="big"), Counted(name="small")
        with_big = Workflow(agent=build(big), fn=classify)
        with_small = Workflow(agent=build(small), fn=classify)
        task = {"text": "is this spam?"}
        go(with_big, task)
        on_small = go(with_small, task)
        assert (big.asked, small.asked) == (1, 1)
        assert on_small.reason == "scripted:small answer 1"
        assert go(with_big, task).reason == "scripted:big answer 1"
        assert go(with_small, task).reason == "scripted:small answer 1"
        assert (big.asked, small.asked) == (1, 1)

    def test_routing_picks_the_model_before_the_lookup(
        self, build, go, store, tools, make_contract
    ):
        """A routing rule sending `classify` to the small model looks up the small model's
        answer, not the big model's cached one."""
        big, small = Counted(name="big"), Counted(name="small")
        go(Workflow(agent=build(big), fn=classify), {"text": "q"})
        routed = Agent.load(
            make_contract(
                routing={"small_model": "scripted:small", "small_for": [{"step": "classify"}]},
                cache=ONE_HOUR,
            ),
            tools=tools,
            model=big,
            small_model=small,
        )
        result = go(Workflow(agent=routed, fn=classify), {"text": "q"})
        assert (big.asked, small.asked) == (1, 1)
        answer = _answer(store, result.run_id)
        assert (answer["model"], answer["route"], answer["cached"]) == (
            "scripted:small",
            "small_for[0]",
            False,
        )

    def test_a_tenant_never_gets_another_tenants_answer(self, build, go, store):
        """acme's cached answer is not served to globex: globex's question asks the model and
        is cached apart; later runs of each tenant get their own tenant's answer."""
        model = Counted()
        workflow = Workflow(agent=build(model), fn=classify)
        task = {"text": "is this spam?"}
        acme = go(workflow, task)
        globex = go(workflow, task, tenant="globex")
        assert model.asked == 2
        assert _answer(store, globex.run_id)["cached"] is False
        assert (acme.reason, globex.reason) == ("scripted:big answer 1", "scripted:big answer 2")

        again = {t: go(workflow, task, tenant=t) for t in ("globex", "acme")}
        assert model.asked == 2
        assert again["acme"].reason == "scripted:big answer 1"
        assert again["globex"].reason == "scripted:big answer 2"
        assert _answer(store, again["acme"].run_id)["cached_from"] == f"{acme.run_id}/1"
        assert _answer(store, again["globex"].run_id)["cached_from"] == f"{globex.run_id}/1"
        assert sorted(e.tenant_id for e in store.cache_entries()) == ["acme", "globex"]

    def test_an_entry_past_its_ttl_is_a_miss_and_is_refreshed(self, build, go, store, clock, home):
        """With a 30-minute TTL, a run 29 minutes later is a hit and one 31 minutes later is a
        miss that refreshes the entry, which later runs then reuse. `cache list` judges
        liveness by the real clock: the first entry (made 40 minutes ago) shows expired,
        the refreshed one live."""
        model = Counted()
        rules = [{"label": "classify", "ttl": "30m"}]
        workflow = Workflow(agent=build(model, cache=rules), fn=classify)
        task = {"text": "is this spam?"}
        clock.advance(minutes=-40)
        first = go(workflow, task)
        clock.advance(minutes=29)
        assert _answer(store, go(workflow, task).run_id)["cached"] is True
        assert model.asked == 1
        (stale,) = listed(home)
        assert (stale["source"], stale["live"]) == (f"{first.run_id}/1", False)

        clock.advance(minutes=2)
        refreshed = go(workflow, task)
        assert model.asked == 2
        assert _answer(store, refreshed.run_id)["cached"] is False
        (fresh,) = listed(home)
        assert (fresh["key"], fresh["source"], fresh["live"]) == (
            stale["key"],
            f"{refreshed.run_id}/1",
            True,
        )
        assert fresh["expires_at"] > stale["expires_at"]
        later = go(workflow, task)
        assert _answer(store, later.run_id)["cached_from"] == f"{refreshed.run_id}/1"
        assert model.asked == 2

    def test_a_kill_switch_on_model_calls_comes_before_the_cache(self, build, go, store):
        """A kill switch on model calls stops a run at a step the cache could answer: no
        model.responded is recorded; released, the next run is answered from the cache."""
        model = Counted()
        workflow = Workflow(agent=build(model), fn=classify)
        task = {"text": "is this spam?"}
        go(workflow, task)
        store.engage_kill_switch(_switch(tool="(model)"))
        killed = go(workflow, task)
        assert (killed.status, killed.outcome) == ("cancelled", "killed")
        assert _events(store, killed.run_id, "model.responded") == []
        assert store.release_kill_switch("agent=*,workflow=*,tenant_id=*,tool=(model)")
        assert _answer(store, go(workflow, task).run_id)["cached"] is True
        assert model.asked == 1

    def test_a_cached_answer_serves_a_run_whose_budget_is_spent(self, build, go, store):
        """With the run's $0.01 budget spent by a write, a cached answer (free) still serves;
        an uncached question in the same position stops the run over budget, unasked."""
        # Quotes 512 tokens of answer at $10/Mtok, about half a cent a turn.
        model = Counted(price_in=0, price_out=10)
        workflow = Workflow(agent=build(model, budget={"per_run_usd": 0.01}), fn=classify)
        assert go(workflow, {"text": "is this spam?"}).outcome == "resolved"

        spent = go(workflow, {"text": "is this spam?", "spend": True})
        assert (spent.status, spent.outcome) == ("completed", "resolved")
        assert spent.reason == "scripted:big answer 1"
        assert round(store.get_run(spent.run_id).cost_usd, 6) == 0.01
        assert _answer(store, spent.run_id)["cached"] is True
        assert model.asked == 1

        uncached = go(workflow, {"text": "is this ham?", "spend": True})
        assert (uncached.status, uncached.outcome) == ("failed", "budget_exceeded")
        assert model.asked == 1


# --- read tools -------------------------------------------------------------------------------
class TestReadTools:
    def test_an_identical_call_is_answered_from_the_cache(self, build, go, store, notes):
        """A second identical read (in the same run, and in a later one) is answered from the
        cache: the tool runs once; the hit is recorded cached, from the first call, at zero
        cost and attempts, its execute check sourced `contract:cache`, its budget estimate 0;
        the run's cost is the first call's only, and the report counts the hits."""
        workflow = Workflow(agent=build(), fn=lookups)
        first = go(workflow, ["a", "a"])
        second = go(workflow, ["a"])
        assert notes.runs == ["a"]
        assert (first.reason, second.reason) == ("a:note | a:note", "a:note")
        completed = _events(store, first.run_id, "tool.completed")
        completed += _events(store, second.run_id, "tool.completed")
        assert [(c["cached"], c["cached_from"]) for c in completed] == [
            (False, None),
            (True, f"{first.run_id}/1"),
            (True, f"{first.run_id}/1"),
        ]
        assert [(c["cost_usd"], c["attempts"]) for c in completed] == [
            (0.002, 1),
            (0, 0),
            (0, 0),
        ]
        assert [c["latency_ms"] for c in completed[1:]] == [0, 0]  # no tool ran
        hit = _events(store, second.run_id, "gate.decided")[0]
        assert hit["decision"] == "allowed"
        assert _check(hit, "budget")["detail"]["estimate_usd"] == 0
        execute = _check(completed[2], "execute")
        assert execute["source"] == "contract:cache"
        assert f"{first.run_id}/1" in execute["reason"]
        assert round(store.get_run(first.run_id).cost_usd, 6) == 0.002
        assert store.get_run(second.run_id).cost_usd == 0
        runs = (first.run_id, second.run_id)
        hits = [run_costs(store.get_run(r), store.events(r)).cache_hits for r in runs]
        assert hits == [1, 1]

    def test_a_hit_takes_no_rate_limit_token(self, build, go, store, notes):
        """Under a burst-1 limit of one call an hour, the first read takes the only token;
        identical reads after it pass from the cache (saying so) without one; a read of
        another item needs a token and is denied."""
        limits = [{"tool": "read_notes", "rate": "1/h", "burst": 1}]
        workflow = Workflow(agent=build(rate_limits=limits), fn=lookups)
        result = go(workflow, ["a", "a", "a", "b"])
        assert [d.kind for d in result.decisions] == ["allowed"] * 3 + ["denied"]
        assert notes.runs == ["a"]
        decided = _events(store, result.run_id, "gate.decided")
        checks = [_check(d, "rate_limit") for d in decided]
        assert [c["outcome"] for c in checks] == ["pass", "pass", "pass", "deny"]
        assert "token taken" in checks[0]["reason"]
        for cached in checks[1:3]:
            assert "answered from the artifact cache: no token taken" in cached["reason"]
        denied = result.decisions[-1]
        assert isinstance(denied, Denied)
        assert denied.check == "rate_limit"

    def test_without_a_rule_the_same_reads_are_rate_limited(self, build, go, notes):
        """The control: without a cache rule, the second identical read finds the bucket
        empty and is denied; the tool ran once."""
        limits = [{"tool": "read_notes", "rate": "1/h", "burst": 1}]
        workflow = Workflow(agent=build(rate_limits=limits, cache=[]), fn=lookups)
        result = go(workflow, ["a", "a"])
        assert [d.kind for d in result.decisions] == ["allowed", "denied"]
        assert notes.runs == ["a"]

    def test_other_arguments_are_a_miss(self, build, go, store, notes):
        """Each distinct argument set is its own entry; a call repeats an entry only with the
        same arguments (in any key order)."""
        workflow = Workflow(agent=build(), fn=lookups)
        result = go(workflow, ["a", "b", "a", "b"])
        assert notes.runs == ["a", "b"]
        assert result.reason == "a:note | b:note | a:note | b:note"

        def reordered(ctx: Context, task: Any) -> str:
            decision = ctx.tool("read_notes", {"label": "a", "item": "c"})
            again = ctx.tool("read_notes", {"item": "c", "label": "a"})
            other = ctx.tool("read_notes", {"item": "c", "label": "b"})
            return " | ".join(d.output["item"] for d in (decision, again, other))

        go(Workflow(agent=workflow.agent, fn=reordered), None)
        assert notes.runs == ["a", "b", "c", "c"]
        assert len(store.cache_entries()) == 4

    def test_a_cached_read_serves_a_run_whose_budget_is_spent(self, build, go, store, notes):
        """With the run's $0.01 budget spent by a write, a cached read passes the budget check
        at an estimate of 0; an uncached ($0.002) read after it is denied at budget."""
        workflow = Workflow(agent=build(budget={"per_run_usd": 0.01}), fn=spend_then_read)
        go(workflow, {"items": ["a"]})
        result = go(workflow, {"spend": True, "items": ["a", "b"]})
        assert [(d.tool, d.kind) for d in result.decisions] == [
            ("record_write", "allowed"),
            ("read_notes", "allowed"),
            ("read_notes", "denied"),
        ]
        assert (result.status, result.outcome) == ("failed", "budget_exceeded")
        assert notes.runs == ["a"]
        hit, miss = [_check(d, "budget") for d in _events(store, result.run_id, "gate.decided")[1:]]
        assert (hit["outcome"], hit["detail"]["estimate_usd"]) == ("pass", 0)
        assert (miss["outcome"], miss["detail"]["estimate_usd"]) == ("deny", 0.002)

    @pytest.mark.parametrize("barrier", ["kill_switch", "policy"])
    def test_a_cached_answer_does_not_pass_the_gate(self, build, go, store, notes, barrier):
        """A call the cache could answer is still judged: under a kill switch on the tool, or
        a policy forbidding it, it is denied at that check, recorded, and never answered.
        Lifted, the same call is a hit, so the entry was there all along."""
        workflow = Workflow(agent=build(), fn=lookups)
        go(workflow, ["a"])
        if barrier == "kill_switch":
            store.engage_kill_switch(_switch(tool="read_notes"))
            barred = workflow
        else:
            forbid = (
                '\n@id("no-reads")\nforbid (principal, action == Action::"read_notes", resource);\n'
            )
            barred = Workflow(agent=build(extra_policies=forbid), fn=lookups)

        result = go(barred, ["a"])
        (denied,) = result.decisions
        assert isinstance(denied, Denied)
        assert denied.check == barrier
        (decided,) = _events(store, result.run_id, "gate.decided")
        assert (decided["decision"], decided["check"]) == ("denied", barrier)
        assert _events(store, result.run_id, "tool.completed") == []
        if barrier == "kill_switch":
            assert (result.status, result.outcome) == ("cancelled", "killed")
            assert store.release_kill_switch("agent=*,workflow=*,tenant_id=*,tool=read_notes")
        else:
            assert (decided["policy_ids"], decided["reason"]) == (
                ["no-reads"],
                "forbidden by no-reads",
            )

        lifted = go(workflow, ["a"])
        assert [c["cached"] for c in _events(store, lifted.run_id, "tool.completed")] == [True]
        assert notes.runs == ["a"]

    def test_a_cached_answer_still_waits_for_its_approval(
        self, build, go, store, notes, plane, client, home
    ):
        """A read held by policy for an approval is held even when the cache could answer it;
        approved, the call is answered from the cache (the tool still ran only once)."""
        workflow = Workflow(agent=build(), fn=lookups)
        first = go(workflow, ["a"])
        held_by_policy = (
            '\n@id("reads-need-ops")\n@approval_tier("ops")\n'
            'forbid (principal, action == Action::"read_notes", resource)\n'
            "unless { context.approvals_granted >= 1 };\n"
        )
        held = Workflow(agent=build(extra_policies=held_by_policy), fn=lookups)
        waiting = go(held, ["a"])
        assert (waiting.status, waiting.outcome) == ("waiting", "pending")
        (decision,) = waiting.decisions
        assert isinstance(decision, NeedsApproval)
        assert _events(store, waiting.run_id, "tool.completed") == []

        client.decide(
            decision.request_id,
            approver="bob",
            token=home.tokens["bob"],
            decision="approve",
            reason="ok",
        )
        assert Worker(plane, [held]).run(until_idle=True).completed == 1
        (completed,) = _events(store, waiting.run_id, "tool.completed")
        assert (completed["cached"], completed["cached_from"]) == (True, f"{first.run_id}/1")
        assert notes.runs == ["a"]


# --- the contract -----------------------------------------------------------------------------
INVALID = [
    pytest.param(
        [{"tool": "record_write", "ttl": "1h"}],
        "cache[0].tool 'record_write' has effect write; only read tools can be cached",
        id="write-tool",
    ),
    pytest.param(
        [{"tool": "launch", "ttl": "1h"}],
        "cache[0].tool 'launch' has effect irreversible; only read tools can be cached",
        id="irreversible-tool",
    ),
    pytest.param(
        [{"tool": "teleport", "ttl": "1h"}],
        "cache[0].tool names 'teleport', which is not granted",
        id="ungranted-tool",
    ),
    pytest.param(
        [{"label": "classify", "tool": "read_notes", "ttl": "1h"}],
        "a cache rule names exactly one of label (a model step) or tool (a read tool)",
        id="label-and-tool",
    ),
    pytest.param(
        [{"ttl": "1h"}],
        "a cache rule names exactly one of label (a model step) or tool (a read tool)",
        id="neither",
    ),
    pytest.param(
        [{"label": "classify", "ttl": "1h"}, {"label": "classify", "ttl": "2h"}],
        "cache[1] repeats label 'classify'; give each one rule",
        id="repeated-label",
    ),
    pytest.param(
        [{"tool": "read_notes", "ttl": "1h"}, {"tool": "read_notes", "ttl": "1h"}],
        "cache[1] repeats tool 'read_notes'; give each one rule",
        id="repeated-tool",
    ),
    pytest.param([{"label": "classify", "ttl": "soon"}], "cache.0.ttl", id="ttl-not-parsed"),
    pytest.param([{"label": "classify", "ttl": 0}], "cache.0.ttl", id="ttl-zero"),
]


class TestContract:
    @pytest.mark.parametrize(("rules", "message"), INVALID)
    def test_a_rule_that_cannot_work_is_refused_on_load(
        self, make_contract, contract_data, rules, message
    ):
        """A cache rule on a write, an ungranted tool, with both or neither target, repeated,
        or with a TTL that is not a positive duration, is a contract error saying why."""
        path = make_contract({**contract_data, "cache": rules})
        with pytest.raises(ContractError, match=re.escape(message)) as raised:
            load_contract(path)
        assert path.name in str(raised.value)

    def test_ttls_are_read_as_durations(self, make_contract, contract_data):
        """TTLs accept '10m', '1h' and plain seconds; an unnamed label or tool is not cached."""
        rules = [
            {"label": "classify", "ttl": "10m"},
            {"label": "draft", "ttl": 45},
            {"tool": "read_notes", "ttl": "1h"},
        ]
        contract = load_contract(make_contract({**contract_data, "cache": rules}))
        assert contract.cache_ttl(label="classify") == 600
        assert contract.cache_ttl(label="draft") == 45
        assert contract.cache_ttl(tool="read_notes") == 3600
        assert contract.cache_ttl(label="summarise") is None
        assert contract.cache_ttl(tool="record_write") is None


# --- at rest ----------------------------------------------------------------------------------
class TestSealedAtRest:
    @pytest.mark.backends("sqlite")
    def test_no_cached_value_is_in_the_database_file_in_clear(
        self, build, go, store, notes, tmp_path
    ):
        """A model answer and a tool output (secrets that redaction keeps out of events) are
        served from the cache to a later run, yet neither appears in the database's files."""
        notes.suffix = TOOL_ANSWER
        model = Counted(text=MODEL_ANSWER)
        seen: list[str] = []

        def answer_and_read(ctx: Context, task: str) -> str:
            seen.append(ctx.model([Message(role="user", content=task)], label="classify").text)
            read = ctx.tool("read_notes", {"item": "a"})
            assert isinstance(read, Allowed)
            seen.append(read.output["item"])
            return "done"

        workflow = Workflow(agent=build(model), fn=answer_and_read)
        go(workflow, "what is the key?")
        reused = go(workflow, "what is the key?")
        assert (model.asked, notes.runs) == (1, ["a"])
        assert seen[2:] == [MODEL_ANSWER, f"a:{TOOL_ANSWER}"]
        flags = [e.payload["cached"] for e in store.events(reused.run_id) if "cached" in e.payload]
        assert flags == [True, True]
        assert len(store.cache_entries()) == 2

        files = sorted(tmp_path.glob("charter.db*"))
        assert files
        on_disk = b"".join(f.read_bytes() for f in files)
        assert b"CachedModelAnswer42" not in on_disk
        assert b"CachedToolAnswer77" not in on_disk

    @pytest.mark.parametrize("kind", ["model", "tool"])
    def test_an_altered_value_is_a_miss(self, build, go, store, notes, raw_db, kind):
        """A cached value with one byte altered does not open: the next run asks the model
        (or runs the tool) again, without error, and the refreshed entry serves after."""
        model = Counted()
        fn, task = (classify, {"text": "q"}) if kind == "model" else (lookups, ["a"])
        workflow = Workflow(agent=build(model), fn=fn)
        go(workflow, task)
        (entry,) = store.cache_entries()
        _flip_a_byte(raw_db, entry.key)

        def asked() -> int:
            return model.asked if kind == "model" else len(notes.runs)

        after = go(workflow, task)
        assert (after.status, after.outcome) == ("completed", "resolved")
        assert asked() == 2
        cached = [e.payload["cached"] for e in store.events(after.run_id) if "cached" in e.payload]
        assert cached == [False]
        (refreshed,) = store.cache_entries()
        assert refreshed.source == f"{after.run_id}/1"
        go(workflow, task)
        assert asked() == 2

    def test_a_value_moved_under_another_key_is_a_miss(self, build, go, store, notes, raw_db):
        """The cache key is sealed with the value: item a's output copied over item b's entry
        does not open there, so reading b runs the tool and answers b, never a."""
        workflow = Workflow(agent=build(), fn=lookups)
        first = go(workflow, ["a", "b"])
        keys = {e.source: e.key for e in store.cache_entries()}
        of_a, of_b = keys[f"{first.run_id}/1"], keys[f"{first.run_id}/2"]
        raw_db.execute(
            "UPDATE artifact_cache SET value = (SELECT value FROM artifact_cache WHERE key = ?) "
            "WHERE key = ?",
            (of_a, of_b),
        )
        moved = go(workflow, ["b", "a"])
        assert moved.reason == "b:note | a:note"
        assert notes.runs == ["a", "b", "b"]


# --- replay and resume ------------------------------------------------------------------------
class TestReplayAndResume:
    def test_replay_of_cache_hits_needs_no_cache(self, build, go, store, home, notes):
        """A run whose model step and read were both cache hits replays step for step (the
        read's arguments come from the cached answer) after `cache clear` emptied the cache,
        calling neither model nor tool."""
        model = Counted(text="urgent")
        workflow = Workflow(agent=build(model), fn=triage)
        first = go(workflow, "triage this")
        second = go(workflow, "triage this")
        assert second.reason == first.reason == "urgent:note"
        cached = [e.payload["cached"] for e in store.events(second.run_id) if "cached" in e.payload]
        assert cached == [True, True]

        assert as_json(clear(home)) == {"dropped": 2}
        assert store.cache_entries() == []
        for run in (first, second):
            report = replay_run(store, run.run_id, [workflow])
            assert report.ok, report.lines()
            assert [(s.kind, s.what, s.verdict) for s in report.steps] == [
                ("model", "model", "match"),
                ("tool", "read_notes", "match"),
            ]
        assert (model.asked, notes.runs) == (1, ["urgent"])

    def test_a_run_resumed_after_the_cache_is_cleared_keeps_its_answer(
        self, build, go, store, plane, clock, client, home
    ):
        """A run answered from the cache that then waits on a timer resumes from its own log
        after the cache is cleared: the model is not asked, the answer is the cached one."""
        model = Counted()
        workflow = Workflow(agent=build(model), fn=classify_then_wait)
        first = go(workflow, "q")
        clock.advance(seconds=61)
        assert plane.resume(first.run_id, workflow).reason == "scripted:big answer 1"
        waiting = go(workflow, "q")
        assert waiting.status == "waiting"
        assert _answer(store, waiting.run_id)["cached"] is True

        assert client.clear_cache(by="oscar", token=home.tokens["oscar"], reason="stale") == 1
        clock.advance(seconds=61)
        done = plane.resume(waiting.run_id, workflow)
        assert (done.status, done.reason) == ("completed", "scripted:big answer 1")
        assert model.asked == 1
        assert store.cache_entries() == []


# --- the CLI ----------------------------------------------------------------------------------
class TestCacheCli:
    @pytest.fixture
    def filled(self, build, go) -> dict[str, str]:
        """acme's cached model answer and read, and globex's cached model answer: the run id
        that produced each tenant's entries."""
        agent = build()
        acme = go(Workflow(agent=agent, fn=triage), "q")
        globex = go(Workflow(agent=agent, fn=classify), {"text": "q"}, tenant="globex")
        return {"acme": acme.run_id, "globex": globex.run_id}

    def test_list_shows_where_entries_came_from_and_never_their_values(self, home, filled):
        """`cache list --json` lists each entry's scope, kind, name, source step and expiry,
        live, with no value; `--tenant` and `--workflow` narrow it."""
        rows = listed(home)
        assert sorted((r["tenant_id"], r["kind"], r["name"], r["source"]) for r in rows) == [
            ("acme", "model", "classify", f"{filled['acme']}/1"),
            ("acme", "tool", "read_notes", f"{filled['acme']}/2"),
            ("globex", "model", "classify", f"{filled['globex']}/1"),
        ]
        for row in rows:
            assert set(row) == {
                "key",
                "tenant_id",
                "workflow",
                "kind",
                "name",
                "source",
                "created_at",
                "expires_at",
                "live",
            }
            assert (row["workflow"], row["live"]) == ("testing", True)
            assert re.fullmatch(r"[0-9a-f]{64}", row["key"])
        assert [r["tenant_id"] for r in listed(home, "--tenant", "globex")] == ["globex"]
        assert listed(home, "--workflow", "other") == []
        table = invoke(home, "cache", "list")
        assert table.exit_code == 0
        assert "read_notes" in table.output

    @pytest.mark.parametrize(
        ("who", "token_of", "code"),
        [
            pytest.param("oscar", None, "credential_invalid", id="no-token"),
            pytest.param("bob", "bob", "not_authorized", id="approver"),
            pytest.param("oscar", "bob", "credential_invalid", id="others-token"),
            pytest.param("oscar", "chr_not_a_token", "credential_invalid", id="bad-token"),
        ],
    )
    def test_clear_is_refused_without_an_operators_credential(
        self, home, store, filled, who, token_of, code
    ):
        """Clearing without a token, as a non-operator, or with someone else's token exits 3
        (a refused credential) and drops nothing."""
        token = home.tokens.get(token_of, token_of) if token_of else None
        result = invoke(
            home, "cache", "clear", "--as", who, "--reason", "stale", "--json", token=token
        )
        assert result.exit_code == 3, result.output
        assert json.loads(result.stdout)["error"]["code"] == code
        assert len(store.cache_entries()) == 3

    def test_clear_by_tenant_leaves_the_other_tenants_entries(self, home, store, filled):
        """An operator's `cache clear --tenant acme` drops acme's two entries only; globex's
        stays (and `--workflow` of another workflow drops none); a bare clear drops the rest."""
        assert as_json(clear(home, "--workflow", "other")) == {"dropped": 0}
        assert as_json(clear(home, "--tenant", "acme")) == {"dropped": 2}
        assert [(e.tenant_id, e.source) for e in store.cache_entries()] == [
            ("globex", f"{filled['globex']}/1")
        ]
        text = invoke(
            home, "cache", "clear", "--as", "oscar", "--reason", "stale", token=home.tokens["oscar"]
        )
        assert text.exit_code == 0
        assert "dropped 1" in text.output
        assert store.cache_entries() == []

    def test_a_clear_is_in_the_control_log_with_who_and_why(self, home, store, filled):
        """Clearing is a control change: the control log records the operator, the scope, the
        reason and how many answers were dropped, and its chain still verifies."""
        assert as_json(clear(home, "--tenant", "acme")) == {"dropped": 2}
        logged = as_json(invoke(home, "kill-switches", "--log", "--json"))
        (entry,) = acts(logged["entries"])
        assert (entry["action"], entry["actor"], entry["dropped"]) == ("cache_clear", "oscar", 2)
        assert entry["key"] == "cache:workflow=*,tenant_id=acme"
        assert entry["reason"] == "stale answers, INC-7"
        assert logged["chain_ok"] is True

    def test_a_clear_without_a_reason_is_refused(self, home, store, filled):
        """A blank reason is refused with reason_invalid and drops nothing."""
        result = invoke(
            home,
            "cache",
            "clear",
            "--as",
            "oscar",
            "--reason",
            " ",
            "--json",
            token=home.tokens["oscar"],
        )
        assert result.exit_code == 2, result.output
        assert json.loads(result.stdout)["error"]["code"] == "reason_invalid"
        assert len(store.cache_entries()) == 3

    def test_clear_expired_drops_only_expired_entries(self, home, store, build, go, clock):
        """`cache clear --expired` drops the entries past their TTL (listed `live: false`) and
        keeps the live ones."""
        workflow = Workflow(agent=build(), fn=classify)
        clock.advance(hours=-2)
        go(workflow, {"text": "old"})
        clock.advance(hours=2)
        go(workflow, {"text": "new"})
        assert sorted(r["live"] for r in listed(home)) == [False, True]
        assert as_json(clear(home, "--expired")) == {"dropped": 1}
        assert [r["live"] for r in listed(home)] == [True]


# --- what a key must hold, and a hit cut off after its intent -----------------------------------
class TestKeysAndCrashes:
    def test_a_step_is_never_served_an_answer_older_than_its_own_ttl(self, build, go, store, clock):
        """Two labels cached with different TTLs ask the same question: the short-lived label
        must not reuse, five minutes on, the answer the long-lived label cached, since its own
        rule allows reuse for one minute only."""
        model = Counted()
        rules = [{"label": "classify", "ttl": "1h"}, {"label": "fresh", "ttl": "1m"}]
        workflow = Workflow(agent=build(model, cache=rules), fn=classify)
        go(workflow, {"text": "q", "label": "classify"})
        clock.advance(minutes=5)
        fresh = go(workflow, {"text": "q", "label": "fresh"})
        assert _answer(store, fresh.run_id)["cached"] is False
        assert model.asked == 2

    def test_an_answer_is_not_reused_across_environments(
        self, make_contract, contract_data, tools, store, plane, notes
    ):
        """A read cached by a run in dev (its own credential, its own limits) is not served to
        a prod run of the same agent, workflow and tenant: prod's read runs the tool."""
        path = make_contract({**contract_data, "cache": ONE_HOUR})
        reads = {}
        for env in ("dev", "prod"):
            agent = Agent.load(path, tools=tools, model=Counted(), environment=env)
            token = create_agent_identity(
                store, agent="test-agent", workflow="testing", tenant_id="acme", environment=env
            ).token
            workflow = Workflow(agent=agent, fn=lookups)
            run_id = plane.start(workflow, credential=token, tenant_id="acme", task=["a"])
            assert plane.resume(run_id, workflow).outcome == "resolved"
            (reads[env],) = _events(store, run_id, "tool.completed")
        assert reads["prod"]["cached"] is False
        assert notes.runs == ["a", "a"]

    def test_a_hit_cut_off_after_its_intent_is_finished_from_the_cache(
        self, build, go, store, notes, plane, creds, monkeypatch
    ):
        """A worker dies right after recording the intent of a read the cache answered (rate
        limit: no token taken; budget: estimate 0). Resumed while the entry is live, the step
        is finished as it was judged, from the cache: the tool does not run, it costs 0."""
        limits = [{"tool": "read_notes", "rate": "1/h", "burst": 1}]
        workflow = Workflow(agent=build(rate_limits=limits), fn=lookups)
        go(workflow, ["a"])
        original, cut = plane.gate._execute, []

        def cut_off(call: Any, policy_ids: list[str]) -> Any:
            if not cut:
                cut.append(call.step)
                raise LeaseLost("the worker died after the intent was recorded")
            return original(call, policy_ids)

        monkeypatch.setattr(plane.gate, "_execute", cut_off)
        run_id = plane.start(workflow, credential=creds["acme"], tenant_id="acme", task=["a"])
        with pytest.raises(LeaseLost):
            plane.resume(run_id, workflow)
        (intent,) = _events(store, run_id, "gate.decided")
        assert "no token taken" in _check(intent, "rate_limit")["reason"]

        assert plane.resume(run_id, workflow).outcome == "resolved"
        (completed,) = _events(store, run_id, "tool.completed")
        assert notes.runs == ["a"]
        assert (completed["cached"], completed["cost_usd"]) == (True, 0)
