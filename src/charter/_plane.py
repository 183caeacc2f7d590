"""The control plane: runs an agent's model loop with every tool call through the gate."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from charter._decision import Allowed, Decision, Denied, Failed, NeedsApproval, Proposed
from charter._events import ModelResponded, Outcome, RunFinished, RunStarted, RunStatus
from charter.exceptions import CharterError, CredentialError
from charter.gate import Executor, Gate, RunState, hash_token
from charter.models import Message, ModelResponse, ToolSpec
from charter.privacy import redact, redact_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from charter._agent import Agent
    from charter.store import Store

__all__ = ["ControlPlane", "RunResult"]


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """How a run ended (or where it is waiting) and every decision the gate made."""

    run_id: str
    status: str
    outcome: str
    reason: str
    decisions: list[Decision] = field(default_factory=list)
    cost_usd: float = 0.0


def _render(decision: Decision) -> str:
    """What the model is told about its call: facts, never an error it could argue with."""
    match decision:
        case Allowed():
            return json.dumps(decision.output)
        case Denied():
            return f"DENIED by {decision.check}: {decision.reason}"
        case NeedsApproval():
            return f"HELD for approval ({decision.tier}), request {decision.request_id}"
        case Proposed():
            return "RECORDED as a draft proposal; not executed"
        case Failed():
            return f"FAILED ({decision.code}): {decision.reason}"


class ControlPlane:
    """Runs agents against one store. Build one per process; it holds no global state."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        executor: Executor | None = None,
    ) -> None:
        """Create the plane and its gate."""
        self.store = store
        self.gate = Gate(store, clock=clock, executor=executor)

    def close(self) -> None:
        """Release the gate's tool threads."""
        self.gate.close()

    def run(self, agent: Agent, *, credential: str, tenant_id: str, task: str) -> RunResult:
        """Run `agent` on `task` for `tenant_id`, authenticated by `credential`.

        Raises:
            CredentialError: The credential is unknown or revoked; no run is started.
        """
        token_hash = hash_token(credential)
        identity = self.store.identity_by_token_hash(token_hash)
        if identity is None or not identity.active:
            problem = "unknown" if identity is None else f"revoked ({identity.id})"
            raise CredentialError(
                f"credential is {problem}", hint="issue one with `charter identity create`"
            )
        contract = agent.contract
        run_id = "run_" + secrets.token_hex(8)
        self.store.start_run(
            run_id,
            RunStarted(
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
                task=redact_text(task),
                task_hash=hashlib.sha256(task.encode()).hexdigest(),
            ),
        )
        state = RunState(run_id=run_id, agent=agent, tenant_id=tenant_id, token_hash=token_hash)
        return self._loop(agent, state, task)

    def _ask(
        self,
        agent: Agent,
        state: RunState,
        messages: list[Message],
        specs: list[ToolSpec],
        turn: int,
    ) -> tuple[ModelResponse, ModelResponded] | str:
        """One model turn and its event, or why it failed."""
        request_hash = hashlib.sha256(
            json.dumps([m.content for m in messages]).encode()
        ).hexdigest()
        started = time.perf_counter()
        try:
            response = agent.model.respond(messages, specs)
        except CharterError as exc:
            return f"{exc.code}: {exc.message}"
        except Exception as exc:  # noqa: BLE001 - a provider bug must still end the run on record
            return f"model_error: {type(exc).__name__}: {exc}"
        latency = (time.perf_counter() - started) * 1000
        state.spent_usd += response.cost_usd
        event = ModelResponded(
            turn=turn,
            model=agent.model.name,
            request_hash=request_hash,
            text=redact_text(response.text),
            tool_calls=[
                c.model_copy(update={"arguments": redact(c.arguments)}) for c in response.tool_calls
            ],
            prompt_tokens=response.usage.prompt_tokens,
            completion_tokens=response.usage.completion_tokens,
            cost_usd=response.cost_usd,
            latency_ms=round(latency, 3),
        )
        return response, event

    def _loop(self, agent: Agent, state: RunState, task: str) -> RunResult:
        messages = [
            Message(role="system", content=agent.instructions),
            Message(role="user", content=task),
        ]
        specs = agent.tool_specs()
        decisions: list[Decision] = []
        tokens = [0, 0]
        cap = agent.contract.budget.per_run_usd

        def finish(status: RunStatus, outcome: Outcome, reason: str) -> RunResult:
            self.store.append(
                state.run_id,
                [
                    RunFinished(
                        status=status,
                        outcome=outcome,
                        reason=reason,
                        cost_usd=round(state.spent_usd, 6),
                        prompt_tokens=tokens[0],
                        completion_tokens=tokens[1],
                    )
                ],
            )
            return RunResult(
                run_id=state.run_id,
                status=status,
                outcome=outcome,
                reason=reason,
                decisions=decisions,
                cost_usd=state.spent_usd,
            )

        deadline = time.monotonic() + agent.contract.timeouts.run
        for turn in range(1, agent.contract.max_turns + 1):
            if cap is not None and state.spent_usd >= cap:
                return finish("completed", "budget_exceeded", f"spent ${state.spent_usd:.4f}")
            if time.monotonic() > deadline:
                return finish(
                    "failed", "failed", f"run timeout ({agent.contract.timeouts.run:g}s) reached"
                )
            asked = self._ask(agent, state, messages, specs, turn)
            if isinstance(asked, str):
                return finish("failed", "failed", asked)
            response, event = asked
            tokens[0] += response.usage.prompt_tokens
            tokens[1] += response.usage.completion_tokens
            self.store.append(state.run_id, [event])
            if not response.tool_calls:
                return finish("completed", "resolved", response.text or "model ended its turn")
            messages.append(
                Message(role="assistant", content=response.text, tool_calls=response.tool_calls)
            )
            held: list[NeedsApproval] = []
            for spec in response.tool_calls:
                decision = self.gate.submit(state, spec)
                decisions.append(decision)
                if isinstance(decision, NeedsApproval):
                    held.append(decision)
                messages.append(
                    Message(role="tool", content=_render(decision), tool_call_id=spec.call_id)
                )
            if held:
                ids = ", ".join(h.request_id for h in held)
                return finish("waiting", "pending", f"waiting for approval: {ids}")
        return finish("failed", "failed", f"no answer within {agent.contract.max_turns} turns")
