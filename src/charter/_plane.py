"""The control plane: starts runs, and resumes them from their log until they rest.

A run is a workflow function executed against its event log. `start` records the run;
`resume` re-executes the workflow, answering recorded steps from the log and doing only new
work, until the workflow returns (the run ends) or waits (the run suspends and holds nothing).
`run` does both, in this process, for the common case of one agent run.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from charter._authn import Authenticator
from charter._events import (
    ApprovalExpired,
    ApprovalRequested,
    Event,
    RunFinished,
    RunStarted,
    RunSuspended,
)
from charter._federation import federation_for
from charter._telemetry import Telemetry, default_telemetry
from charter._time import iso, utcnow
from charter.engine import (
    CollectorPause,
    Finish,
    LoadedRun,
    RunContext,
    RunResult,
    Stop,
    Suspend,
    Workflow,
    agent_loop,
)
from charter.exceptions import CharterError, LeaseLost, StateError
from charter.gate import Executor, Gate, RunState
from charter.privacy import Vault
from charter.store import ReleaseRun
from charter.store._lease import new_owner

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from charter._agent import Agent
    from charter._decision import Decision
    from charter.store import ApprovalRecord, RunRecord, Store

__all__ = ["ControlPlane", "RunResult"]

_log = logging.getLogger("charter.runs")


class ControlPlane:
    """Starts and resumes runs against one store. Build one per process; no global state."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = utcnow,
        executor: Executor | None = None,
        vault: Vault | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        """Create the plane and its gate.

        Args:
            store: Where runs live.
            clock: The time source for policies, timers and approval expiry.
            executor: Runs tool code (threads, timeouts, retries).
            vault: Encrypts raw payloads; by default under the store's keyring.
            telemetry: Where traces and metrics go; by default as the OTEL_* environment
                variables say (`Telemetry.from_env`), else the process's global providers.
        """
        self.store = store
        self.clock = clock
        self.vault = vault or Vault.for_store(store, clock=clock)
        self.telemetry = telemetry or default_telemetry()
        self.telemetry.watch_approvals(lambda: len(store.list_approvals(status="pending")))
        self.gate = Gate(
            store, clock=clock, executor=executor, vault=self.vault, telemetry=self.telemetry
        )
        self.auth = Authenticator(store, clock=clock, federation=federation_for(store))
        """Turns a run's credential (a Charter token or an IdP's JWT) into its principal."""

    def close(self) -> None:
        """Release the gate's tool threads."""
        self.gate.close()

    # --- starting -----------------------------------------------------------------------------
    def start(
        self,
        workflow: Workflow,
        *,
        credential: str,
        tenant_id: str,
        task: Any,  # noqa: ANN401 - any JSON value the workflow takes
        initiator: str = "",
        lease_owner: str | None = None,
    ) -> str:
        """Record a new run of `workflow`; it is runnable at once (by `resume` or a worker).

        Args:
            workflow: What to run, and as which agent.
            credential: The agent identity's token; the run acts as that identity.
            tenant_id: The tenant the run acts for.
            task: The workflow's input (for `agent_loop`, the task text).
            initiator: Who asked for the run; separation of duties bars them from approving it.
            lease_owner: Start the run leased to this owner, to resume it here.

        Raises:
            CredentialError: The credential is unknown, forged, revoked, expired, or a
                person's; no run is started.
        """
        identity = self.auth.principal(credential, kind="agent")
        agent = workflow.agent
        contract = agent.contract
        run_id = "run_" + secrets.token_hex(8)
        text = task if isinstance(task, str) else repr(task)
        trace_id, span_id = self.telemetry.run_started(
            run_id=run_id, agent=contract.agent, workflow=contract.workflow, tenant_id=tenant_id
        )
        started = RunStarted(
            agent=contract.agent,
            workflow=contract.workflow,
            tenant_id=tenant_id,
            principal_id=identity.id,
            contract_version=contract.version,
            contract_hash=contract.digest,
            policy_hash=agent.policy.digest,
            model=agent.model.name,
            model_kind=agent.model.kind,
            budget_usd=contract.budget.per_run_usd,
            environment=contract.environment.value,
            autonomy=contract.autonomy.value,
            task=contract.redactor.text(text),
            task_hash=hashlib.sha256(text.encode()).hexdigest(),
            initiator=initiator,
            trace_id=trace_id,
            span_id=span_id,
        )
        sealed = self.vault.seal(
            tenant_id=tenant_id,
            run_id=run_id,
            name="0:input",
            value=task,
            workflow=contract.workflow,
            retention=contract.retention_class,
        )
        self.store.start_run(run_id, started, raw={"0:input": sealed}, owner=lease_owner)
        return run_id

    def run(
        self, agent: Agent, *, credential: str, tenant_id: str, task: str, initiator: str = ""
    ) -> RunResult:
        """Start `agent` on `task` with the agent loop and run it here until it rests.

        Raises:
            CredentialError: The credential is unknown or revoked; no run is started.
        """
        workflow = Workflow(agent=agent, fn=agent_loop)
        # Leased from its first event: a worker on the same store must not run it too.
        owner = new_owner()
        run_id = self.start(
            workflow,
            credential=credential,
            tenant_id=tenant_id,
            task=task,
            initiator=initiator,
            lease_owner=owner,
        )
        try:
            return self.resume(run_id, workflow, lease_owner=owner)
        finally:
            self.store.release_run(run_id, owner=owner)

    # --- resuming -----------------------------------------------------------------------------
    def resume(
        self,
        run_id: str,
        workflow: Workflow,
        *,
        worker: str = "inline",
        lease_owner: str | None = None,
    ) -> RunResult:
        """Re-execute the run's workflow from its log until the run ends or waits again.

        The caller must hold the run, and passes its lease (`lease_owner`), which fences every
        append. A run flagged for cancellation settles any step left mid-way (same key) and
        stops before its next new step.

        Raises:
            LeaseLost: Another worker claimed the run meanwhile; nothing more was written.
        """
        record = self.store.get_run(run_id)
        if record.final:
            return _result(record, [])
        if record.workflow != workflow.name:
            raise StateError(
                f"run {run_id} belongs to workflow {record.workflow!r}, not {workflow.name!r}"
            )
        with CollectorPause() as pause:
            loaded = LoadedRun.load(self.store, run_id)
            state = loaded.state(workflow.agent)
            state.lease_owner = lease_owner
            return self._replay_and_run(loaded, state, workflow, worker, pause)

    def _replay_and_run(
        self,
        loaded: LoadedRun,
        state: RunState,
        workflow: Workflow,
        worker: str,
        pause: CollectorPause,
    ) -> RunResult:
        record = loaded.record
        with self.telemetry.segment(
            run_id=record.run_id,
            agent=record.agent,
            workflow=record.workflow,
            tenant_id=record.tenant_id,
            trace_id=loaded.trace[0],
            span_id=loaded.trace[1],
            reason="started" if record.event_count == 1 else "resumed",
        ) as span:
            for wait in loaded.waits:
                self.telemetry.approval_waited(
                    tier=wait.tier,
                    request_id=wait.request_id,
                    status=wait.status,
                    approvers=wait.approvers,
                    requested_at=wait.requested_at,
                    decided_at=wait.decided_at,
                )
            context = span.get_span_context()
            ctx = RunContext(
                state=state,
                history=loaded.history,
                raw=loaded.raw,
                store=self.store,
                gate=self.gate,
                vault=self.vault,
                clock=self.clock,
                worker=worker,
                on_new_work=pause.end,
                span_id=f"{context.span_id:016x}" if context.is_valid else "",
            )
            result = self._work(loaded, ctx, workflow)
            span.set_attribute("charter.status", result.status)
            if result.status == "failed":
                self.telemetry.failed(span, result.reason)
            _log.info(
                "run %s %s (%s)",
                result.run_id,
                result.status,
                result.outcome,
                extra={
                    "run_id": result.run_id,
                    "worker": worker,
                    "status": result.status,
                    "outcome": result.outcome,
                    "waiting_on": result.waiting_on or None,
                },
            )
            return result

    def _work(self, loaded: LoadedRun, ctx: RunContext, workflow: Workflow) -> RunResult:
        """Run the workflow on `ctx` until it ends or waits; record how it stopped."""
        run_id = loaded.record.run_id
        redactor = workflow.agent.contract.redactor
        try:
            # Inside: an input that does not open fails this run on record, not the worker.
            task = loaded.task(self.vault)
            ctx.state.task = redactor.text(task if isinstance(task, str) else repr(task))
            finish = _outcome(workflow.fn(ctx, task))
        except Suspend as wait:
            return self._suspend(ctx, wait)
        except Stop as stop:
            finish = stop.finish
        except LeaseLost:
            raise
        except CharterError as exc:
            finish = Finish(status="failed", outcome="failed", reason=str(exc), code=exc.code)
        except Exception as exc:  # noqa: BLE001 - workflow code is the user's; end on record
            reason = redactor.text(f"workflow raised {type(exc).__name__}: {exc}")
            finish = Finish(status="failed", outcome="failed", reason=reason, code="workflow_error")
        return self._finish(run_id, finish, ctx.decisions, ctx.state)

    def _suspend(self, ctx: RunContext, wait: Suspend) -> RunResult:
        event = RunSuspended(
            waiting_on=wait.waiting_on,
            wake_at=wait.wake_at,
            reason=wait.reason,
            active_ms=ctx.active_ms,
        )
        ctx.state.append(self.store, [event])
        record = self.store.get_run(ctx.run_id)
        return _result(record, ctx.decisions, waiting_on=wait.waiting_on)

    def _finish(
        self, run_id: str, finish: Finish, decisions: list[Decision], state: RunState
    ) -> RunResult:
        record = self.store.get_run(run_id)
        for deferred in state.deferred:
            record = record.apply(deferred)  # the totals include results not yet written
        event = RunFinished(
            status=finish.status,
            outcome=finish.outcome,
            reason=state.agent.contract.redactor.text(finish.reason),
            cost_usd=round(record.cost_usd, 6),
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            code=finish.code,
        )
        # Whatever the run still holds reserved against shared budgets goes back with its end.
        state.append(self.store, [event], charges=[ReleaseRun(run_id=run_id)])
        return _result(self.store.get_run(run_id), decisions)

    # --- approvals that nobody decided ---------------------------------------------------------
    def expire(self, request: ApprovalRecord, workflow: Workflow) -> ApprovalExpired | None:
        """Apply the tier's `on_expiry` to an expired request: deny, or escalate a tier up.

        Returns None when a decision won the race and the request is no longer pending.
        """
        contract = workflow.agent.contract
        tier = contract.approval_tiers.get(request.tier)
        events: list[Event]
        if tier is None or tier.on_expiry == "deny" or tier.escalate_to is None:
            expired = ApprovalExpired(
                step=request.step, request_id=request.request_id, action="deny"
            )
            events = [expired]
        else:
            upper = contract.approval_tiers[tier.escalate_to]
            new_id = "apr_" + secrets.token_hex(8)
            expired = ApprovalExpired(
                step=request.step,
                request_id=request.request_id,
                action="escalate",
                escalated_to=new_id,
            )
            events = [
                expired,
                ApprovalRequested(
                    step=request.step,
                    request_id=new_id,
                    tool=request.tool,
                    tier=tier.escalate_to,
                    role=upper.role,
                    approvers=upper.approvers,
                    expires_at=iso(self.clock() + timedelta(seconds=upper.expires_after)),
                    summary=request.summary,
                    diff=request.diff,
                    excluded=request.excluded,
                ),
            ]
        try:
            self.store.append(request.run_id, events)
        except StateError:
            return None
        return expired


def _outcome(returned: object) -> Finish:
    """How a workflow's return value ends its run."""
    if isinstance(returned, Finish):
        return returned
    # The run's end redacts the reason with the contract's own patterns too.
    return Finish(reason="workflow returned" if returned is None else str(returned))


def _result(
    record: RunRecord, decisions: list[Decision], *, waiting_on: list[str] | None = None
) -> RunResult:
    return RunResult(
        run_id=record.run_id,
        status=record.status,
        outcome=record.outcome or "",
        reason=record.reason or "",
        decisions=decisions,
        cost_usd=record.cost_usd,
        waiting_on=waiting_on or [],
    )
