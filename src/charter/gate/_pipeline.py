"""The gate: every proposed tool call passes the same stages, in order, and each leaves a check.

The decision stages (`Gate.stages`) do no side effect. The proposal and the decision, carrying
every stage's check (and, when held, the approval request), are written in one durable append
*before* anything executes: that append is the intent. The last three stages then execute,
validate the output and record the result, which rides on the run's next append (see
`RunState.defer`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from charter._decision import (
    Allowed,
    CheckResult,
    Decision,
    Denied,
    Failed,
    NeedsApproval,
    Proposed,
)
from charter._events import (
    ApprovalRequested,
    Check,
    Event,
    GateDecided,
    ModelResponded,
    ToolCompleted,
    ToolProposed,
)
from charter._telemetry import Telemetry
from charter._time import iso
from charter.exceptions import BudgetExceeded, ControlChanged, RateLimited
from charter.gate._access import check_grant, check_kill_switch, check_principal
from charter.gate._approval import check_approval
from charter.gate._cache import ArtifactCache
from charter.gate._call import Call, RunState, idempotency_key, input_hash
from charter.gate._controls import Controls
from charter.gate._execute import Execution, Executor, validate_output
from charter.gate._limits import budget_caps, check_budget, check_rate_limit, rate_rule
from charter.gate._policy import check_policy
from charter.gate._validate import check_input_size, check_schema, check_verifiers, within_limit
from charter.gate._verifier import check_verifier
from charter.store import Reserve, Settle, micros, usd

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from charter._events import ToolCallSpec
    from charter._telemetry import ToolSpan
    from charter.exceptions import LimitReached, ToolError
    from charter.models import ModelResponse
    from charter.privacy import Redactor, Vault
    from charter.store import Charge, Store

__all__ = ["Gate", "Stage"]

Stage = Callable[[Call], CheckResult]
"""A decision stage: reads the call, may fill in what it learned, returns its check."""


class Gate:
    """Judges, executes and records tool calls for runs that share one store."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime],
        vault: Vault,
        executor: Executor | None = None,
        sleep: Callable[[float], None] = time.sleep,
        telemetry: Telemetry | None = None,
    ) -> None:
        """Build the pipeline, with the plane's clock and vault.

        `clock` feeds the policy's time-window context; `vault` seals raw payloads and cached
        answers.
        """
        self._store = store
        self._clock = clock
        self._vault = vault
        self.telemetry = telemetry or Telemetry()
        """Where steps' spans and metrics go."""
        self.controls = Controls(store)
        """Kill switches, identities and cancellations, refreshed per call."""
        self.executor = executor or Executor()
        """Runs tool calls (and model calls) on threads, so their timeouts can be enforced."""
        self.executor.telemetry = self.telemetry
        self.cache = ArtifactCache(store, self._vault, clock)
        """Answers of the contract's cached read tools and model steps."""
        self.stages: list[Stage] = [
            partial(check_kill_switch, controls=self.controls),
            partial(check_principal, controls=self.controls),
            check_grant,
            check_input_size,
            check_schema,
            partial(check_policy, clock=clock),
            check_rate_limit,
            partial(check_budget, clock=clock),
            check_verifiers,
            check_verifier,
            check_approval,
        ]
        """Stages 1-11, in order. Execution, output and record follow for allowed calls."""
        self.sleep = sleep
        """How a call waits for a rate-limit token (`on_limit: wait`)."""

    def close(self) -> None:
        """Release the tool threads."""
        self.executor.close()

    def decide(self, call: Call) -> tuple[list[CheckResult], list[int]]:
        """Run the decision stages until one denies or proposes; no side effect, nothing written.

        Returns the checks and each one's duration in microseconds.
        """
        if call.control_version is None:
            self.controls.refresh()
        call.control_version = self.controls.version
        checks: list[CheckResult] = []
        timings: list[int] = []
        for stage in self.stages:
            started = time.perf_counter_ns()
            result = stage(call)
            timings.append((time.perf_counter_ns() - started) // 1000)
            checks.append(result)
            if result.outcome == "hold":
                call.holds.append(result)
            elif result.outcome in ("deny", "propose"):
                break
        return checks, timings

    def submit(self, run: RunState, spec: ToolCallSpec, *, step: int) -> Decision:
        """Judge one proposed call and, if allowed, execute and record it exactly once.

        `step` is the call's place in the run; with the run id it fixes the idempotency key, so
        a step judged again after a crash or an approval presents the same key downstream.
        Arguments over the contract's `max_argument_bytes` are replaced by their stand-in
        before anything reads them (see `within_limit`), and denied by the `input_size` stage.
        """
        key = idempotency_key(run.run_id, step)
        limit = run.agent.contract.max_argument_bytes
        bounded = within_limit(spec.arguments, limit)
        if bounded is not spec.arguments:
            spec = spec.model_copy(update={"arguments": bounded})
        with self._step_span(run, spec.tool, step, key) as span:
            hit: LimitReached | None = None
            known: int | None = None
            verified: ModelResponse | None = None
            waited = 0.0
            while True:
                call = Call(
                    run=run,
                    step=step,
                    spec=spec,
                    idempotency_key=key,
                    limit_hit=hit,
                    control_version=known,
                    verification=verified,
                    span=span,
                )
                # Judged again after a refused charge, the call keeps the verifier's answer: the
                # verifier is asked (and paid) once per judgement that can be recorded.
                verified = None
                try:
                    return self._judge(call)
                except RateLimited as exc:
                    verified = call.verification
                    rule = rate_rule(run.agent.contract, spec.tool)
                    if (
                        rule is not None
                        and rule.on_limit == "wait"
                        and (waited + exc.retry_after_s <= rule.max_wait)
                    ):
                        self.sleep(exc.retry_after_s)
                        waited += exc.retry_after_s
                        continue
                    hit = exc
                except BudgetExceeded as exc:
                    verified, hit = call.verification, exc
                except ControlChanged as exc:
                    # A kill switch or revocation landed since this node last heard: judge again,
                    # from the start (the verifier included).
                    self.controls.refresh(exc.version)
                    known = exc.version

    def _step_span(
        self, run: RunState, tool: str, step: int, key: str
    ) -> AbstractContextManager[ToolSpan]:
        grant = run.agent.contract.tools.get(tool)
        return self.telemetry.tool_step(
            # The name is the model's to propose: a secret in it must not name a span.
            tool=run.agent.contract.redactor.text(tool),
            effect=grant.effect.value if grant is not None else "ungranted",
            step=step,
            idempotency_key=key,
            workflow=run.agent.contract.workflow,
        )

    def _judge(self, call: Call) -> Decision:
        """Decide, record and (if allowed) execute one call; raises `LimitReached` unwritten."""
        step, spec, key = call.step, call.spec, call.idempotency_key
        redactor = call.run.agent.contract.redactor
        self._look_up(call)
        deciding = time.time_ns()
        checks, timings = self.decide(call)
        final = checks[-1]
        if call.span is not None:
            call.span.decided(
                decision=_DECISIONS[final.outcome],
                check=None if final.outcome == "pass" else final.check,
                policy_ids=call.policy.policy_ids if call.policy else (),
                tier=final.tier,
                started_ns=deciding,
                ended_ns=time.time_ns(),
            )
        tool = call.tool_name
        proposed = ToolProposed(
            step=step,
            call_id=redactor.text(spec.call_id),
            tool=tool,
            effect=call.grant.effect.value if call.grant else "unknown",
            arguments=redactor.value(spec.arguments),
            input_hash=input_hash(spec.arguments),
            idempotency_key=key,
        )
        policy_ids = list(call.policy.policy_ids) if call.policy else []
        recorded = _recorded(checks, timings, redactor)
        reason = redactor.text(final.reason)
        decision: Decision
        if final.outcome == "deny":
            decision = Denied(
                step=step, tool=tool, check=final.check, reason=reason, source=final.source
            )
            verdict = GateDecided(
                step=step,
                tool=tool,
                decision="denied",
                check=final.check,
                reason=reason,
                policy_ids=policy_ids,
                checks=recorded,
            )
            events: list[Event] = [proposed, verdict]
        elif final.outcome == "propose":
            # Previews run only for calls a human will look at, never for refused ones.
            diff = self._diff(call)
            decision = Proposed(step=step, tool=tool, diff=tuple(diff))
            verdict = GateDecided(
                step=step,
                tool=tool,
                decision="proposed",
                check="approval",
                reason=reason,
                policy_ids=policy_ids,
                diff=diff,
                checks=recorded,
            )
            events = [proposed, verdict]
        elif final.outcome == "hold":
            decision, held = self._hold(call, final, self._diff(call), policy_ids, recorded)
            events = [proposed, *held]
        else:
            verdict = GateDecided(
                step=step,
                tool=tool,
                decision="allowed",
                check=None,
                reason="every check passed",
                policy_ids=policy_ids,
                checks=recorded,
            )
            # The intent is durable before the effect: a crash from here on is resumable. Its
            # charges (token, reservation) commit with it or, if one does not fit, nothing does;
            # and only under the controls it was judged by (a kill switch binds at once).
            self._record(call, [proposed, verdict], intent=True)
            return self._execute(call, policy_ids)
        self._record(call, events, intent=False)
        return decision

    def _look_up(self, call: Call) -> None:
        """Find a cached result for a call of a cached read tool, before it is judged.

        The call is judged all the same (a cached answer is no licence); only the limits know
        that no call will reach the tool, and execution takes the answer instead.
        """
        run = call.run
        contract = run.agent.contract
        ttl = contract.cache_ttl(tool=call.spec.tool)
        tool = run.agent.tools.get(call.spec.tool)
        if ttl is None or tool is None:
            return
        call.cache_key = ArtifactCache.tool_key(
            contract, run.tenant_id, tool.name, tool.output_model, call.spec.arguments
        )
        call.cached = self.cache.get(call.cache_key, tenant_id=run.tenant_id)

    def _record(self, call: Call, events: list[Event], *, intent: bool) -> None:
        """Append the call's decision, after the verifier's judgement of it if there was one.

        An intent carries its charges, and commits only under the controls it was judged by.
        """
        verified = self._verified(call)
        if intent:
            call.run.append(
                self._store,
                [*verified, *events],
                charges=call.charges,
                control_version=call.control_version,
            )
        else:
            call.run.append(self._store, [*verified, *events])
        if verified and call.verification is not None:
            # Counted once written: a refused append is judged again with the same answer.
            call.run.spent_usd += call.verification.cost_usd

    def _verified(self, call: Call) -> list[Event]:
        """The verifier's model call as an event (verification cost), if it judged this call."""
        response = call.verification
        verifier = call.run.agent.verifier
        if response is None or verifier is None:
            return []
        return [
            ModelResponded(
                step=call.step,
                model=verifier.name,
                request_hash="",
                text=call.run.agent.contract.redactor.text(response.text),
                tool_calls=[],
                prompt_tokens=response.usage.prompt_tokens,
                completion_tokens=response.usage.completion_tokens,
                cost_usd=response.cost_usd,
                latency_ms=0.0,
                purpose="verify",
            )
        ]

    def complete(
        self, run: RunState, spec: ToolCallSpec, *, step: int, policy_ids: list[str]
    ) -> Decision:
        """Execute a step whose allowed decision (its intent) is recorded but whose result is not.

        The crash came between the intent and the result, so the effect may have happened. The
        decision stands as recorded; the call is executed again with the same idempotency key,
        and the downstream system answers with the effect it already made, or makes it now.
        """
        key = idempotency_key(run.run_id, step)
        with self._step_span(run, spec.tool, step, key) as span:
            call = Call(run=run, step=step, spec=spec, idempotency_key=key, span=span)
            call.tool = run.agent.tools[spec.tool]
            call.args = call.tool.input_model.model_validate(spec.arguments)
            # A cached read was decided as one: answer it from the cache again if the entry
            # lives (if not, the read runs, which a read may).
            self._look_up(call)
            return self._execute(call, policy_ids)

    def _hold(
        self,
        call: Call,
        final: CheckResult,
        diff: list[dict[str, Any]],
        policy_ids: list[str],
        recorded: list[Check],
    ) -> tuple[NeedsApproval, list[Event]]:
        assert final.tier is not None  # noqa: S101 - holds always name a tier
        tier = call.run.agent.contract.approval_tiers[final.tier]
        request_id = "apr_" + secrets.token_hex(8)
        expires = self._clock() + timedelta(seconds=tier.expires_after)
        contract = call.run.agent.contract
        redactor = contract.redactor
        excluded = sorted({name for name in (contract.owner, call.run.initiator) if name})
        shown = ", ".join(f"{k}={v!r}" for k, v in redactor.value(call.spec.arguments).items())
        summary = f"{call.tool_name}({shown})"
        decision = NeedsApproval(
            step=call.step,
            tool=call.tool_name,
            tier=final.tier,
            request_id=request_id,
            reason=redactor.text(final.reason),
            diff=tuple(diff),
        )
        events: list[Event] = [
            GateDecided(
                step=call.step,
                tool=call.tool_name,
                decision="needs_approval",
                check=final.check,
                reason=redactor.text(final.reason),
                policy_ids=policy_ids,
                tier=final.tier,
                diff=diff,
                checks=recorded,
            ),
            ApprovalRequested(
                step=call.step,
                request_id=request_id,
                tool=call.tool_name,
                tier=final.tier,
                role=tier.role,
                approvers=tier.approvers,
                expires_at=iso(expires),
                summary=summary,
                diff=diff,
                excluded=excluded,
            ),
        ]
        return decision, events

    def _keep(self, call: Call, output: dict[str, Any]) -> None:
        """Cache a read tool's validated result for the contract's TTL."""
        assert call.cache_key is not None  # noqa: S101 - only cached tools have a key
        run = call.run
        contract = run.agent.contract
        ttl = contract.cache_ttl(tool=call.spec.tool)
        assert ttl is not None  # noqa: S101 - the key was made because a rule names the tool
        self.cache.put(
            call.cache_key,
            contract=contract,
            tenant_id=run.tenant_id,
            kind="tool",
            name=call.spec.tool,
            source=f"{run.run_id}/{call.step}",
            value=output,
            ttl_s=ttl,
        )

    def _diff(self, call: Call) -> list[dict[str, Any]]:
        """The action proposal's diff: the tool's preview, or the arguments as new values."""
        if call.tool is None or call.args is None or call.grant is None:
            return []
        if call.grant.effect.value == "read":
            return []
        redactor = call.run.agent.contract.redactor
        if call.tool.preview is not None:
            try:
                changes = call.tool.preview(call.args, call.context())
            except Exception as exc:  # noqa: BLE001 - a failing preview must not hide the call
                return [
                    {"path": "(preview failed)", "before": None, "after": redactor.text(str(exc))}
                ]
            return [redactor.value(c.model_dump(mode="json")) for c in changes]
        return [
            {"path": name, "before": None, "after": redactor.value(value)}
            for name, value in call.args.model_dump(mode="json").items()
        ]

    def _execute(self, call: Call, policy_ids: list[str]) -> Decision:
        assert call.tool is not None  # noqa: S101
        run, tool = call.run, call.tool
        redactor = run.agent.contract.redactor
        if call.cached is not None:
            execution = Execution(
                check=CheckResult.passed(
                    "execute",
                    f"answered from the artifact cache, as first produced by {call.cached.source}",
                    "contract:cache",
                ),
                raw=call.cached.value,
            )
        else:
            execution = self.executor.execute(
                call, default_timeout_s=run.agent.contract.timeouts.tool
            )
        checks = [execution.check]
        timings = [round(execution.latency_ms * 1000)]
        output: dict[str, Any] | None = None
        if execution.error is None:
            started = time.perf_counter_ns()
            output_check, output = validate_output(call, execution.raw)
            checks.append(output_check)
            timings.append((time.perf_counter_ns() - started) // 1000)
        failed = checks[-1].outcome == "fail"
        # Every attempt that reached the tool is paid for, whether or not its output was usable.
        cost = (
            0.0
            if call.cached is not None
            else usd(micros(tool.cost_usd) * max(execution.attempts, 1))
        )
        run.spent_usd += cost
        checks.append(CheckResult.passed("record", "result recorded", "store"))
        timings.append(0)  # the record is this very append
        completed = ToolCompleted(
            step=call.step,
            tool=call.tool_name,
            status="error" if failed else "ok",
            output=redactor.value(output) if output is not None else None,
            output_hash=input_hash(output) if output is not None else None,
            error_code=_error_code(execution.error, checks[-2]) if failed else None,
            error=redactor.text(checks[-2].reason) if failed else None,
            attempts=execution.attempts,
            latency_ms=round(execution.latency_ms, 3),
            cost_usd=cost,
            idempotency_key=call.idempotency_key,
            checks=_recorded(checks, timings, redactor),
            policy_ids=policy_ids,
            cached=call.cached is not None,
            cached_from=call.cached.source if call.cached is not None else None,
        )
        if call.span is not None:
            call.span.completed(
                status=completed.status,
                latency_ms=completed.latency_ms,
                attempts=execution.attempts,
                cost_usd=cost,
                cached=completed.cached,
                error_code=completed.error_code,
            )
        if call.cache_key is not None and call.cached is None and output is not None and not failed:
            self._keep(call, output)
        raw = None
        if output is not None:
            data_class = call.facts.data_class if call.facts is not None else None
            sealed = self._vault.seal(
                tenant_id=run.tenant_id,
                run_id=run.run_id,
                name=f"{call.step}:output",
                value=output,
                workflow=run.agent.contract.workflow,
                retention=run.agent.contract.retention_for(data_class),
            )
            raw = {f"{call.step}:output": sealed}
        # The result rides on the run's next append (group commit; see RunState.defer), and
        # with it the settlement of the call's reservation at its real cost.
        reserved = next((c for c in call.charges if isinstance(c, Reserve)), None)
        settle: list[Charge] = []
        if reserved is not None or budget_caps(run.agent.contract, run.tenant_id, self._clock):
            settle = [Settle(run_id=run.run_id, step=call.step, cost_usd=cost, reserved=reserved)]
        run.defer([completed], raw=raw, charges=settle)
        if failed:
            bad = checks[-2]
            return Failed(
                step=call.step,
                tool=call.tool_name,
                check=bad.check,
                code=str(completed.error_code),
                reason=bad.reason,
                retryable=bool(execution.error and execution.error.retryable),
            )
        assert output is not None  # noqa: S101
        return Allowed(
            step=call.step, tool=completed.tool, output=output, policy_ids=tuple(policy_ids)
        )


_DECISIONS = {"pass": "allowed", "deny": "denied", "hold": "needs_approval", "propose": "proposed"}
"""A final stage outcome as the decision it makes."""


def _recorded(checks: list[CheckResult], timings: list[int], redactor: Redactor) -> list[Check]:
    """The checks as the log keeps them; they quote what they judged, so they are redacted."""
    # Built from typed stage results, so pydantic's validation would only repeat the types.
    return [
        Check.model_construct(
            check=c.check,
            outcome=c.outcome,
            reason=redactor.text(c.reason),
            source=c.source,
            detail=redactor.value(c.detail) if c.detail else {},
            duration_us=t,
        )
        for c, t in zip(checks, timings, strict=True)
    ]


def _error_code(error: ToolError | None, failed_check: CheckResult) -> str:
    if error is not None:
        return error.code
    return str(failed_check.detail.get("code", "tool_output_invalid"))
