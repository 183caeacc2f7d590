"""Replay: re-execute a run's workflow with every step answered from its log.

Nothing is called and nothing is written: the replay context has no gate, no executor and no
model, only the log and the run's encrypted raw payloads. It reports, step by step, whether the
workflow as deployed now asks for what the run recorded, which is the question before a code
change ships and the evidence after an incident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from charter._events import RunFinished
from charter.engine._context import Context, Finish, Stop, Suspend
from charter.engine._history import (
    CollectorPause,
    LoadedRun,
    request_hash,
    response_from_json,
)
from charter.exceptions import NotFoundError
from charter.gate import input_hash
from charter.gate._validate import within_limit
from charter.privacy import Vault

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import JsonValue

    from charter._decision import Decision
    from charter.engine._history import History, StepRecord
    from charter.engine._workflow import Workflow
    from charter.gate import RunState
    from charter.models import Message, ModelResponse, ToolSpec
    from charter.store import Store

__all__ = ["ReplayReport", "StepReplay", "replay_run"]

Verdict = Literal["match", "diverged", "unreached", "past_log"]


@dataclass(frozen=True, kw_only=True)
class StepReplay:
    """One step's replay: did the workflow ask for what the log recorded?"""

    step: int
    kind: str
    what: str
    verdict: Verdict
    detail: str = ""


@dataclass(kw_only=True)
class ReplayReport:
    """The replay of one run."""

    run_id: str
    workflow: str
    steps: list[StepReplay] = field(default_factory=list)
    ended: str = ""
    """How the replay ended: the workflow returned, reached the run's wait, or diverged."""
    same_end: bool = True
    """False when the replayed workflow ends with another outcome than the run did."""

    @property
    def ok(self) -> bool:
        """No step diverged, every recorded step was reached, and the run ends the same."""
        return self.same_end and all(s.verdict in ("match", "past_log") for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "ok": self.ok,
            "ended": self.ended,
            "same_end": self.same_end,
            "steps": [s.__dict__ for s in self.steps],
        }

    def lines(self) -> list[str]:
        """One line per step, then the verdict."""
        out = [f"replay of {self.run_id} ({self.workflow}); no tool or model called"]
        for s in self.steps:
            detail = f": {s.detail}" if s.detail else ""
            out.append(f"  step {s.step:<3} {s.kind:<5} {s.what:<20} {s.verdict}{detail}")
        out.append(f"{'ok' if self.ok else 'DIVERGED'}: {self.ended}")
        return out


class _Halt(BaseException):
    """Stops the replayed workflow: the log has nothing more to answer with."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class ReplayContext(Context):
    """Answers every step from the log; calls nothing, writes nothing."""

    def __init__(
        self,
        *,
        state: RunState,
        history: History,
        raw: dict[str, bytes],
        vault: Vault,
        ended: bool = False,
    ) -> None:
        """Bind to one run's log; `ended` when the run finished (its log is complete)."""
        self._ended = ended
        self._state = state
        self._history = history
        self._raw = raw
        self._vault = vault
        self._step = 0
        self.steps: list[StepReplay] = []

    def _open(self, name: str) -> Any:  # noqa: ANN401 - any JSON value
        return self._vault.open(
            tenant_id=self.tenant_id, run_id=self.run_id, name=name, data=self._raw[name]
        )

    def _record(self, step: int, kind: str, what: str, verdict: Verdict, detail: str = "") -> None:
        self.steps.append(
            StepReplay(step=step, kind=kind, what=what, verdict=verdict, detail=detail)
        )

    def _recorded(self, kind: str, what: str, *, named: str = "") -> StepRecord:
        """The log's step here, or halt: past the log, or a different kind of step.

        A tool step matches its name as the log holds it (`what`, redacted) or, in logs from
        before names were redacted, as the workflow `named` it.
        """
        self._step += 1
        record = self._history.steps.get(self._step)
        if record is None:
            if self._ended:
                # The run finished without this step: the workflow asks for more than it did.
                self._record(
                    self._step, kind, what, "diverged", "the finished run has no such step"
                )
                raise _Halt(f"step {self._step} diverged: the run ended before it")
            self._record(self._step, kind, what, "past_log", "the run never reached this step")
            raise _Halt(f"the workflow asks for step {self._step}, past the end of the log")
        if record.kind != kind or (kind == "tool" and record.tool not in (what, named or what)):
            recorded = record.tool or record.kind
            self._record(self._step, kind, what, "diverged", f"the log records {recorded} here")
            raise _Halt(f"step {self._step} diverged")
        return record

    def model(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        label: str | None = None,
    ) -> ModelResponse:
        """The recorded model response for this step (and the re-asked one, as routed)."""
        del tools, label  # the request hash covers the conversation, as in the live context
        response, route = self._model_step(messages)
        threshold = self._state.agent.contract.routing.escalate_below
        if (
            route is not None
            and threshold is not None
            and response.confidence is not None
            and response.confidence < threshold
        ):
            response, _ = self._model_step(messages)
        return response

    def _model_step(self, messages: list[Message]) -> tuple[ModelResponse, str | None]:
        record = self._recorded("model", "model")
        if record.model is None:
            self._record(record.step, "model", "model", "match", "held past the budget")
            state = self._history.approval_state(record)
            raise _Halt(
                f"step {record.step} (model) was held for an approval to go past the budget; "
                f"its approval is {state}"
            )
        same = record.model.request_hash == request_hash(messages)
        detail = "" if same else "the model would be sent a different conversation"
        self._record(record.step, "model", "model", "match" if same else "diverged", detail)
        response = response_from_json(self._open(f"{record.step}:response"))
        self._state.spent_usd += response.cost_usd
        return response, record.model.route

    def tool(
        self, name: str, arguments: dict[str, JsonValue], *, call_id: str | None = None
    ) -> Decision:
        """The recorded decision for this step; never the tool itself."""
        del call_id
        name, asked = self._redactor.text(name), name
        record = self._recorded("tool", name, named=asked)
        assert record.proposed is not None  # noqa: S101
        # Hashed as the live context hashes them: over the limit, their stand-in.
        bounded = within_limit(arguments, self._state.agent.contract.max_argument_bytes)
        recorded = record.proposed.input_hash
        # A log from before the limit holds oversized arguments' own hash.
        same = recorded == input_hash(bounded) or (
            bounded is not arguments and recorded == input_hash(arguments)
        )
        verdict: Verdict = "match" if same else "diverged"
        detail = "" if same else "called with other arguments than recorded"
        if record.completed is not None:
            self._state.spent_usd += record.completed.cost_usd
            output = (
                self._open(f"{record.step}:output") if record.completed.status == "ok" else None
            )
            self._record(record.step, "tool", name, verdict, detail)
            return self._history.recorded_decision(record, output)
        decided = record.decided
        if decided is not None and decided.decision in ("denied", "proposed"):
            self._record(record.step, "tool", name, verdict, detail or decided.decision)
            return self._history.recorded_decision(record, None)
        self._record(record.step, "tool", name, verdict, detail)
        if decided is not None and decided.decision == "needs_approval":
            state = self._history.approval_state(record)
            raise _Halt(f"step {record.step} ({name}) is held; its approval is {state}")
        raise _Halt(
            f"step {record.step} ({name}) was allowed but has no recorded result; resuming "
            "re-executes it with the same idempotency key"
        )

    def sleep(self, seconds: float) -> None:
        """A recorded timer: passes at once."""
        record = self._recorded("timer", "sleep")
        assert record.timer is not None  # noqa: S101
        same = record.timer.seconds == seconds
        detail = "" if same else f"recorded {record.timer.seconds:g}s"
        self._record(record.step, "timer", "sleep", "match" if same else "diverged", detail)


def replay_run(store: Store, run_id: str, workflows: Sequence[Workflow]) -> ReplayReport:
    """Replay a run with the workflow of its name from `workflows`.

    Raises:
        NotFoundError: No such run, or no workflow of its name.
    """
    record = store.get_run(run_id)
    known = {w.name: w for w in workflows}
    workflow = known.get(record.workflow)
    if workflow is None:
        raise NotFoundError(
            f"no workflow named {record.workflow!r} to replay {run_id} with",
            hint="pass the app that defines it: --app module:factory",
        )
    with CollectorPause():
        return _replay(store, workflow, LoadedRun.load(store, run_id))


def _replay(store: Store, workflow: Workflow, loaded: LoadedRun) -> ReplayReport:
    run_id = loaded.record.run_id
    vault = Vault.for_store(store)
    history = loaded.history
    ended = isinstance(loaded.last, RunFinished)
    ctx = ReplayContext(
        state=loaded.state(workflow.agent),
        history=history,
        raw=loaded.raw,
        vault=vault,
        ended=ended,
    )
    report = ReplayReport(run_id=run_id, workflow=workflow.name, steps=ctx.steps)
    task = loaded.task(vault)
    try:
        returned = workflow.fn(ctx, task)
    except _Halt as halt:
        report.ended = halt.why
    except (Suspend, Stop) as signal:
        report.ended = f"the workflow stopped: {signal}"
    except Exception as exc:  # noqa: BLE001 - the replayed code is the user's
        report.ended = f"the workflow raised {type(exc).__name__}: {exc}"
        report.same_end = not ended  # a finished run did not raise there
    else:
        report.ended, report.same_end = _compare_finish(returned, loaded.last)
    for step in sorted(set(history.steps) - {s.step for s in ctx.steps}):
        missed = history.steps[step]
        ctx.steps.append(
            StepReplay(
                step=step,
                kind=missed.kind,
                what=missed.tool or missed.kind,
                verdict="unreached",
                detail="recorded, but the workflow did not ask for it",
            )
        )
    return report


def _compare_finish(returned: object, last: object) -> tuple[str, bool]:
    outcome = returned.outcome if isinstance(returned, Finish) else "resolved"
    if isinstance(last, RunFinished) and last.outcome != outcome:
        return f"the workflow ends {outcome}; the run ended {last.outcome}", False
    return f"the workflow returned ({outcome}), as the run did", True
