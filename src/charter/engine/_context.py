"""The run context: the one door through which a workflow reaches models, tools and time.

Every call through `ctx` is a numbered step. Resuming a run re-executes the workflow from the
top; a step the log already holds is answered from the log (after checking the workflow asked
for the same thing), and only steps past the log do new work. Workflow code must therefore be
deterministic given its step results: no clocks, randomness or I/O outside `ctx`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from charter._decision import Decision, Denied, NeedsApproval
from charter._events import (
    MODEL_CALL,
    TIMER,
    ApprovalRequested,
    GateDecided,
    ModelResponded,
    RunResumed,
    TimerStarted,
    ToolCallSpec,
)
from charter._time import iso
from charter.engine._history import request_hash, response_from_json, response_to_json
from charter.exceptions import BudgetExceeded, CharterError, NonDeterminismError
from charter.gate import ArtifactCache, bounded_calls, budget_caps, input_hash, within_limit
from charter.models import Message, ModelResponse, ToolSpec, Usage
from charter.store import Reserve, Settle, dollars, micros

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from pydantic import JsonValue

    from charter._agent import Agent
    from charter.engine._history import History, StepRecord
    from charter.gate import Gate, RunState
    from charter.models import Model
    from charter.privacy import Redactor, Vault
    from charter.store import Charge, Store

__all__ = ["Context", "Finish", "RunContext", "Stop", "Suspend"]


@dataclass(frozen=True, kw_only=True)
class Finish:
    """What a workflow returns to end its run with a specific status and outcome."""

    status: Literal["completed", "failed", "cancelled"] = "completed"
    outcome: Literal[
        "resolved", "deflected", "escalated", "failed", "budget_exceeded", "killed", "abandoned"
    ] = "resolved"
    reason: str = ""
    code: str | None = None


class Suspend(BaseException):
    """Unwinds the workflow when it must wait.

    A BaseException, so an `except Exception` in workflow code cannot swallow it.
    """

    def __init__(self, *, waiting_on: list[str], wake_at: str | None, reason: str) -> None:
        """Record what the run waits for."""
        super().__init__(reason)
        self.waiting_on = waiting_on
        self.wake_at = wake_at
        self.reason = reason


class Stop(BaseException):
    """Unwinds the workflow to end the run (cancelled, timed out, model failure)."""

    def __init__(self, finish: Finish) -> None:
        """End the run as `finish` says."""
        super().__init__(finish.reason)
        self.finish = finish


class Context(ABC):
    """What a workflow function receives: models, tools and timers, each a numbered step.

    `RunContext` executes new steps through the gate; `ReplayContext` answers every step
    from the log. Workflow code cannot tell them apart, which is what makes replay honest.
    """

    _state: RunState
    _history: History

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._state.run_id

    @property
    def tenant_id(self) -> str:
        """The tenant the run acts for."""
        return self._state.tenant_id

    @property
    def agent(self) -> Agent:
        """The agent: contract, tools, model, policy."""
        return self._state.agent

    @property
    def _redactor(self) -> Redactor:
        return self._state.agent.contract.redactor

    @property
    def spent_usd(self) -> float:
        """Model and tool cost so far, replayed steps included."""
        return self._state.spent_usd

    @abstractmethod
    def model(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        label: str | None = None,
    ) -> ModelResponse:
        """Ask the agent's model (one step; two when a routed answer is asked again).

        `label` names the step for the contract's routing rules (`routing.small_for`).
        """

    @abstractmethod
    def tool(
        self, name: str, arguments: dict[str, JsonValue], *, call_id: str | None = None
    ) -> Decision:
        """Propose a tool call to the gate (one step)."""

    @abstractmethod
    def sleep(self, seconds: float) -> None:
        """Wait, durably (one step)."""


class RunContext(Context):
    """The live context: new steps pass the gate and are recorded; old ones replay."""

    def __init__(
        self,
        *,
        state: RunState,
        history: History,
        raw: dict[str, bytes],
        store: Store,
        gate: Gate,
        vault: Vault,
        clock: Callable[[], datetime],
        worker: str,
        on_new_work: Callable[[], None] | None = None,
        span_id: str = "",
    ) -> None:
        """Bind the context to one resumption of one run.

        `on_new_work` is called once replay is over, before the first new step. `span_id` is
        this resumption's span in the run's trace, recorded with its `run.resumed`.
        """
        self._state = state
        self._history = history
        self._raw = raw
        self._store = store
        self._gate = gate
        self._vault = vault
        self._clock = clock
        self._worker = worker
        self._on_new_work = on_new_work
        self._span_id = span_id
        self._step = 0
        self._began = time.perf_counter()
        self._resumed = False
        self._last_tool: str | None = None
        self.replayed = 0
        """Steps answered from the log in this resumption."""
        self.decisions: list[Decision] = []
        """Every tool decision the workflow saw, replayed ones included."""

    @property
    def state(self) -> RunState:
        """The gate's view of the run, with the events waiting to ride on its next append."""
        return self._state

    @property
    def active_ms(self) -> int:
        """Running time so far across resumptions; waiting does not count."""
        return self._history.active_ms + round((time.perf_counter() - self._began) * 1000)

    # --- steps ------------------------------------------------------------------------------
    def model(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        label: str | None = None,
    ) -> ModelResponse:
        """Ask the model the contract's routing picks; a recorded step answers from the log.

        A small-model answer whose confidence is below `routing.escalate_below` is asked again
        of the agent's own model, as a step of its own.

        Raises:
            NonDeterminismError: The log's step here was not this model call.
        """
        response, route = self._model_step(messages, tools, label=label, routed=True)
        threshold = self.agent.contract.routing.escalate_below
        if (
            route is not None
            and threshold is not None
            and response.confidence is not None
            and response.confidence < threshold
        ):
            response, _ = self._model_step(messages, tools, label=label, routed=False)
        return response

    def _model_step(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None,
        *,
        label: str | None,
        routed: bool,
    ) -> tuple[ModelResponse, str | None]:
        step = self._next()
        asked = request_hash(messages)
        record = self._history.steps.get(step)
        last_tool, self._last_tool = self._last_tool, None
        approved = False
        if record is not None:
            self._expect(record, "model", f"model call (request {asked[:12]})")
        if record is not None and record.model is None:
            # Held for an approval to go past the budget: still waiting, refused, or approved.
            approved = self._past_budget_approved(record)
        elif record is not None:
            assert record.model is not None  # noqa: S101 - a model step has its event
            if record.model.request_hash != asked:
                raise NonDeterminismError(
                    f"step {step}: the model was sent a different conversation than the log "
                    f"records (request {asked[:12]}, recorded {record.model.request_hash[:12]})"
                )
            response = response_from_json(self._open(f"{step}:response"))
            self._state.spent_usd += response.cost_usd
            self.replayed += 1
            return response, record.model.route
        self._before_new_work()
        self._stop_if_killed(MODEL_CALL, pause=True)
        agent = self.agent
        specs = agent.tool_specs() if tools is None else tools
        model, route = self._route(label, last_tool) if routed else (agent.model, None)
        contract = agent.contract
        ttl = contract.cache_ttl(label=label)
        key = None
        if ttl is not None:
            key = ArtifactCache.model_key(
                contract, self.tenant_id, model.name, messages, specs, label=str(label)
            )
            cached = self._cached_answer(step, asked, model.name, route=route, key=key)
            if cached is not None:
                return cached, route
        asked_of = model
        model, route, reserved = self._reserve(
            step, model, route, messages, specs, approved=approved
        )
        if self._state.deferred:
            # A model call can take minutes: record the last result before waiting on one.
            self._state.append(self._store, [])
        response, latency = self._call_model(model, messages, specs)
        raw = self._record_answer(
            step, model.name, asked, response, latency_ms=latency, route=route, reserved=reserved
        )
        if ttl is not None and key is not None:
            if model is not asked_of:  # degraded to the small model: its answer, its key
                key = ArtifactCache.model_key(
                    contract, self.tenant_id, model.name, messages, specs, label=str(label)
                )
            self._gate.cache.put(
                key,
                contract=contract,
                tenant_id=self.tenant_id,
                kind="model",
                name=str(label),
                source=f"{self.run_id}/{step}",
                value=raw,
                ttl_s=ttl,
            )
        return response, route

    def _cached_answer(
        self, step: int, asked: str, model: str, *, route: str | None, key: str
    ) -> ModelResponse | None:
        """The step's answer from the artifact cache, recorded as the step's; None on a miss."""
        started = time.perf_counter()
        hit = self._gate.cache.get(key, tenant_id=self.tenant_id)
        if hit is None:
            return None
        # Reused as recorded, but it cost this run nothing and used no tokens.
        cached = replace(response_from_json(hit.value), usage=Usage(), cost_usd=0.0)
        latency = (time.perf_counter() - started) * 1000
        self._record_answer(
            step, model, asked, cached, latency_ms=latency, route=route, cached_from=hit.source
        )
        return cached

    def _record_answer(
        self,
        step: int,
        model: str,
        asked: str,
        response: ModelResponse,
        *,
        latency_ms: float,
        route: str | None,
        cached_from: str | None = None,
        reserved: Reserve | None = None,
    ) -> dict[str, Any]:
        """Record a model step's answer, its raw copy sealed; returns the raw copy."""
        raw = response_to_json(response)
        redact = self._redactor
        event = ModelResponded(
            step=step,
            model=model,
            request_hash=asked,
            response_hash=hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest(),
            text=redact.text(response.text),
            # Names, call ids and argument keys are the model's to choose: a secret in any of
            # them is redacted like one in a value.
            tool_calls=[
                ToolCallSpec.model_construct(
                    call_id=redact.text(c.call_id),
                    tool=redact.text(c.tool),
                    arguments=redact.value(c.arguments),
                )
                for c in response.tool_calls
            ],
            prompt_tokens=response.usage.prompt_tokens,
            completion_tokens=response.usage.completion_tokens,
            cost_usd=response.cost_usd,
            latency_ms=round(latency_ms, 3),
            route=route,
            cached=cached_from is not None,
            cached_from=cached_from,
        )
        self._gate.telemetry.model_call(
            model=model,
            step=step,
            input_tokens=event.prompt_tokens,
            output_tokens=event.completion_tokens,
            cost_usd=event.cost_usd,
            latency_ms=latency_ms,
            cached=event.cached,
            workflow=self.agent.contract.workflow,
        )
        slot = f"{step}:response"
        settle: list[Charge] = (
            []
            if reserved is None
            else [
                Settle(run_id=self.run_id, step=step, cost_usd=response.cost_usd, reserved=reserved)
            ]
        )
        self._state.append(self._store, [event], raw={slot: self._seal(slot, raw)}, charges=settle)
        self._state.spent_usd += response.cost_usd
        return raw

    def _route(self, label: str | None, last_tool: str | None) -> tuple[Model, str | None]:
        """The model the contract's routing rules pick for this step, and the rule's name."""
        agent = self.agent
        if agent.small_model is None:
            return agent.model, None
        for i, rule in enumerate(agent.contract.routing.small_for):
            if (rule.step is None or rule.step == label) and (
                rule.after_tool is None or rule.after_tool == last_tool
            ):
                return agent.small_model, f"small_for[{i}]"
        return agent.model, None

    def _past_budget_approved(self, record: StepRecord) -> bool:
        """The fate of a model step held for an approval to go past the budget.

        True once approved; a pending request suspends the run again, a refused or expired
        one ends it over budget.
        """
        state = self._history.approval_state(record)
        if state in ("pending", "escalated"):
            assert record.request_id is not None  # noqa: S101 - a held step has its request
            raise Suspend(
                waiting_on=[record.request_id],
                wake_at=None,
                reason=f"step {record.step} (model) waits for approval {record.request_id}",
            )
        if state == "approved":
            return True
        refusals = [v for v in record.verdicts if v.decision == "deny"]
        why = (
            f"denied by {refusals[-1].approver}: {refusals[-1].reason}"
            if refusals
            else f"approval {record.request_id} expired with no decision"
        )
        raise Stop(_over_budget(f"going past the budget was not approved ({why})"))

    def _reserve(
        self,
        step: int,
        model: Model,
        route: str | None,
        messages: list[Message],
        specs: list[ToolSpec],
        *,
        approved: bool,
    ) -> tuple[Model, str | None, Reserve | None]:
        """Check the budget before a model call; degrade, escalate or stop as the contract says.

        Returns the model to ask (the small one after a `degrade`), its route, and the
        reservation written against the shared caps, if any (the answer settles it).
        `approved`: a person let this call go past the budget; it is still counted.
        """
        agent, budget = self.agent, self.agent.contract.budget
        if not budget.capped:
            return model, route, None
        if approved:
            return model, route, self._reserve_past_caps(step, model, messages, specs)
        candidates = [(model, route)]
        small = agent.small_model
        if budget.on_exceeded == "degrade" and small is not None and small is not model:
            candidates.append((small, "degraded"))
        problem = ""
        for candidate, why in candidates:
            estimate = candidate.estimate_usd(messages, specs)
            cap = budget.per_run_usd
            if estimate is None:
                problem = f"{candidate.name} has no price, so its cost cannot be held to a budget"
                continue
            if cap is not None and micros(self.spent_usd) + micros(estimate) > micros(cap):
                problem = (
                    f"a call of {candidate.name} would take the run past its {dollars(cap)} budget"
                )
                continue
            caps = budget_caps(agent.contract, self.tenant_id, self._clock)
            if not caps or estimate <= 0:
                return candidate, why, None
            reserve = Reserve(run_id=self.run_id, step=step, amount_usd=estimate, caps=caps)
            try:
                # Written now, with any deferred result: the call holds its estimate against
                # the shared caps while it runs, and its answer settles it.
                self._state.append(self._store, [], charges=[reserve])
            except BudgetExceeded as exc:
                problem = exc.message
                continue
            return candidate, why, reserve
        if budget.on_exceeded == "escalate" and budget.escalate_tier is not None:
            self._hold_past_budget(step, model, budget.escalate_tier, problem)
        raise Stop(_over_budget(problem))

    def _reserve_past_caps(
        self, step: int, model: Model, messages: list[Message], specs: list[ToolSpec]
    ) -> Reserve | None:
        """Reserve an approved call against the day caps without enforcing them.

        The ledger still counts what a call a person let through spends.
        """
        estimate = model.estimate_usd(messages, specs)
        caps = budget_caps(self.agent.contract, self.tenant_id, self._clock)
        if not caps or not estimate:
            return None
        reserve = Reserve(
            run_id=self.run_id, step=step, amount_usd=estimate, caps=caps, enforce=False
        )
        self._state.append(self._store, [], charges=[reserve])
        return reserve

    def _hold_past_budget(self, step: int, model: Model, tier_name: str, problem: str) -> None:
        """Ask for an approval to let this model call go past the budget, and wait for it."""
        contract = self.agent.contract
        tier = contract.approval_tiers[tier_name]
        request_id = "apr_" + secrets.token_hex(8)
        request = ApprovalRequested(
            step=step,
            request_id=request_id,
            tool=MODEL_CALL,
            tier=tier_name,
            role=tier.role,
            approvers=tier.approvers,
            expires_at=iso(self._clock() + timedelta(seconds=tier.expires_after)),
            summary=self._redactor.text(f"call {model.name} past the budget: {problem}"),
            diff=[],
            excluded=sorted({n for n in (contract.owner, self._state.initiator) if n}),
        )
        self._state.append(self._store, [request])
        raise Suspend(
            waiting_on=[request_id],
            wake_at=None,
            reason=f"step {step} (model) waits for approval {request_id} to go past the budget",
        )

    def _call_model(
        self, model: Model, messages: list[Message], specs: list[ToolSpec]
    ) -> tuple[ModelResponse, float]:
        limit = self.agent.contract.timeouts.model
        started = time.perf_counter()
        try:
            response = self._gate.executor.bounded(
                partial(model.respond, messages, specs), timeout_s=limit
            )
        except TimeoutError as exc:
            raise Stop(
                _failed(f"model_timeout: no answer within {limit:g}s", "model_timeout")
            ) from exc
        except CharterError as exc:
            raise Stop(_failed(f"{exc.code}: {exc.message}", exc.code)) from exc
        except Exception as exc:  # a provider bug must still end the run on record
            raise Stop(_failed(f"model_error: {type(exc).__name__}: {exc}", "model_error")) from exc
        # Oversized arguments never reach the log, the raw copy or the workflow: their stand-in
        # does, and replays as recorded (the gate then denies the call, check input_size).
        calls = bounded_calls(response.tool_calls, self.agent.contract.max_argument_bytes)
        if calls is not response.tool_calls:
            response = replace(response, tool_calls=calls)
        return response, (time.perf_counter() - started) * 1000

    def _pause_if_killed(self, tool: str) -> None:
        """Pause before a new tool step if a kill switch matches and the contract says pause.

        Before the gate, so the step is not recorded as denied and runs once the switch is
        released. With `stop`, the gate records the denial and the run then ends.
        """
        if self.agent.contract.on_kill == "pause":
            self._stop_if_killed(tool, pause=True)

    def _stop_if_killed(self, tool: str, *, pause: bool = False) -> None:
        """End the run if a kill switch matches it.

        With `pause`, and the contract's `on_kill: pause`, the run is suspended instead.
        """
        contract = self.agent.contract
        switch = self._gate.controls.engaged(
            agent=contract.agent, workflow=contract.workflow, tenant_id=self.tenant_id, tool=tool
        )
        if switch is None:
            return
        if pause and contract.on_kill == "pause":
            raise Suspend(
                waiting_on=[f"kill_switch:{switch.key}"],
                wake_at=None,
                reason=f"paused by kill switch {switch.key}: {switch.reason}",
            )
        raise Stop(
            Finish(
                status="cancelled",
                outcome="killed",
                reason=f"kill switch {switch.key}: {switch.reason}",
                code="killed",
            )
        )

    def tool(
        self, name: str, arguments: dict[str, JsonValue], *, call_id: str | None = None
    ) -> Decision:
        """Propose a tool call to the gate; a recorded step answers from the log.

        Returns the decision: `Allowed` (with the output), `Denied`, `Proposed` or `Failed`. A
        call held for approval suspends the run here; the workflow resumes at this line with
        the final decision once approvers decide.

        Raises:
            NonDeterminismError: The log's step here was another tool or other arguments.
        """
        step = self._next()
        # Weighed before anything reads them: over the limit, only their stand-in goes on.
        bounded = within_limit(arguments, self.agent.contract.max_argument_bytes)
        spec = ToolCallSpec(call_id=call_id or f"call_{step}", tool=name, arguments=bounded)
        record = self._history.steps.get(step)
        if record is None:
            self._before_new_work()
            self._pause_if_killed(name)
            decision = self._gate.submit(self._state, spec, step=step)
        else:
            spec = self._expect_call(record, spec, arguments)
            decision = self._resolve(record, spec)
        self.decisions.append(decision)
        self._last_tool = name
        if isinstance(decision, Denied) and decision.check == "kill_switch":
            # The denial is on record; the run stops (or, under `on_kill: pause`, waits) rather
            # than let the agent work around it. The gate can see a switch this process had
            # not heard of yet when the step began: that must pause a pausing run all the same.
            self._stop_if_killed(name, pause=True)
        if isinstance(decision, Denied) and decision.check == "budget":
            raise Stop(_over_budget(decision.reason))
        if isinstance(decision, NeedsApproval):
            raise Suspend(
                waiting_on=[decision.request_id],
                wake_at=None,
                reason=f"step {step} ({decision.tool}) waits for approval {decision.request_id}",
            )
        return decision

    def sleep(self, seconds: float) -> None:
        """A durable timer: the run suspends, holding no thread, and resumes once it is due."""
        step = self._next()
        record = self._history.steps.get(step)
        if record is not None:
            self._expect(record, "timer", f"sleep({seconds:g})")
            assert record.timer is not None  # noqa: S101
            wake_at = record.timer.wake_at
            self.replayed += 1
        else:
            self._before_new_work()
            self._stop_if_killed(TIMER, pause=True)
            wake_at = iso(self._clock() + timedelta(seconds=seconds))
            timer = TimerStarted(step=step, seconds=seconds, wake_at=wake_at)
            self._state.append(self._store, [timer])
        if iso(self._clock()) < wake_at:
            raise Suspend(
                waiting_on=["timer"], wake_at=wake_at, reason=f"step {step} sleeps until {wake_at}"
            )

    # --- plumbing ---------------------------------------------------------------------------
    def _next(self) -> int:
        self._step += 1
        return self._step

    def _before_new_work(self, *, settling: bool = False) -> None:
        """Checks that come before any new side effect, and the resume marker.

        `settling`: the work finishes a step already decided, which a cancellation must not stop.
        """
        if self._on_new_work is not None:
            self._on_new_work()
        controls = self._gate.controls
        controls.refresh()
        why = None if settling else controls.cancelled(self.run_id)
        if why is not None:
            raise Stop(
                Finish(
                    status="cancelled",
                    outcome="abandoned",
                    reason=why,
                    code="cancelled",
                )
            )
        limit_ms = self.agent.contract.timeouts.run * 1000
        if self.active_ms > limit_ms:
            raise Stop(
                _failed(
                    f"run timeout ({self.agent.contract.timeouts.run:g}s of running time) reached",
                    "run_timeout",
                )
            )
        if not self._resumed:
            self._resumed = True
            resumed = RunResumed(
                worker=self._worker,
                reason="started" if self._step == 1 else f"resumed at step {self._step}",
                replayed_steps=self.replayed,
                span_id=self._span_id,
            )
            self._state.defer([resumed])

    def _expect(self, record: StepRecord, kind: str, asked: str) -> None:
        if record.kind != kind:
            recorded = record.tool or record.kind
            raise NonDeterminismError(
                f"step {record.step}: the workflow asked for {asked}, but the log records a "
                f"{record.kind} step ({recorded}) there",
                hint="workflow code must make the same calls in the same order when replayed; "
                "deploy changes to new runs only",
            )

    def _expect_call(
        self, record: StepRecord, spec: ToolCallSpec, arguments: dict[str, JsonValue]
    ) -> ToolCallSpec:
        """The call as the log recorded it; raise if the workflow asked for another.

        `arguments` are the workflow's own, which a log from before `max_argument_bytes` may
        hold in full where `spec` carries their stand-in.
        """
        # The log holds the name redacted (logs from before that, as proposed): like with like.
        shown = self._redactor.text(spec.tool)
        self._expect(record, "tool", f"tool {shown}")
        assert record.proposed is not None  # noqa: S101
        if record.proposed.tool not in (shown, spec.tool):
            raise NonDeterminismError(
                f"step {record.step}: the workflow called {shown}, the log records "
                f"{record.proposed.tool}"
            )
        if record.proposed.input_hash == input_hash(spec.arguments):
            return spec
        if spec.arguments is not arguments and record.proposed.input_hash == input_hash(arguments):
            return spec.model_copy(update={"arguments": arguments})
        raise NonDeterminismError(
            f"step {record.step}: {shown} was called with other arguments than the log "
            "records (input hash differs)"
        )

    def _resolve(self, record: StepRecord, spec: ToolCallSpec) -> Decision:
        """The decision of a step the log already holds, finishing it if it was interrupted."""
        # Verification already paid for this step counts, however the step resolves now.
        self._state.spent_usd += record.verified_usd
        # A completed step is answered without typing its decision (see StepRecord.decided).
        decided = None if record.completed is not None else record.decided
        if record.completed is not None or (
            decided is not None and decided.decision in ("denied", "proposed")
        ):
            self.replayed += 1
            completed, output = record.completed, None
            if completed is not None:
                self._state.spent_usd += completed.cost_usd
                if completed.status == "ok":
                    output = self._open(f"{record.step}:output")
            return self._history.recorded_decision(record, output)
        if decided is None:
            self._before_new_work()
            self._pause_if_killed(spec.tool)
            return self._gate.submit(self._state, spec, step=record.step)
        if decided.decision == "allowed":
            # The intent is durable but the result is not: finish the step, same key, even in
            # a run being cancelled, so that the log records the effect that may have happened.
            self._before_new_work(settling=True)
            return self._gate.complete(
                self._state, spec, step=record.step, policy_ids=decided.policy_ids
            )
        state = self._history.approval_state(record)
        if state in ("pending", "escalated"):
            # Still waiting: nothing new happens, nothing is recorded.
            assert record.request_id is not None  # noqa: S101
            return NeedsApproval(
                step=record.step,
                tool=spec.tool,
                tier=decided.tier or "",
                request_id=record.request_id,
                reason=decided.reason,
            )
        self._before_new_work()
        self._pause_if_killed(spec.tool)
        if state == "approved":
            # Judged afresh: a kill switch or policy change since the request still applies.
            self._state.approvals[record.step] = record.granted
            return self._gate.submit(self._state, spec, step=record.step)
        return self._deny_unapproved(record, spec, state)

    def _deny_unapproved(self, record: StepRecord, spec: ToolCallSpec, state: str | None) -> Denied:
        if state == "expired":
            reason = f"approval {record.request_id} expired with no decision"
        else:
            refusals = [v for v in record.verdicts if v.decision == "deny"]
            by = refusals[-1] if refusals else None
            reason = f"denied by {by.approver}: {by.reason}" if by else "approval denied"
        decided = GateDecided(
            step=record.step,
            tool=self._redactor.text(spec.tool),
            decision="denied",
            check="approval",
            reason=reason,
            policy_ids=record.decided.policy_ids if record.decided else [],
        )
        self._state.append(self._store, [decided])
        return Denied(step=record.step, tool=decided.tool, check="approval", reason=reason)

    def _seal(self, name: str, value: Any) -> bytes:  # noqa: ANN401 - any JSON value
        return self._vault.seal(
            tenant_id=self.tenant_id,
            run_id=self.run_id,
            name=name,
            value=value,
            workflow=self.agent.contract.workflow,
            retention=self.agent.contract.retention_class,
        )

    def _open(self, name: str) -> Any:  # noqa: ANN401 - any JSON value
        data = self._raw.get(name)
        if data is None:
            raise NonDeterminismError(
                f"{name}: the raw payload that replays this step is missing from the store"
            )
        return self._vault.open(tenant_id=self.tenant_id, run_id=self.run_id, name=name, data=data)


def _over_budget(reason: str) -> Finish:
    return Finish(status="failed", outcome="budget_exceeded", reason=reason, code="budget_exceeded")


def _failed(reason: str, code: str) -> Finish:
    return Finish(status="failed", outcome="failed", reason=reason, code=code)
