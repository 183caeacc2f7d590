"""Workflows: plain functions of a run context, registered with the agent they run as."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charter._decision import Allowed, Decision, Denied, Failed, NeedsApproval, Proposed
from charter.engine._context import Context, Finish
from charter.exceptions import ConfigError
from charter.models import Message
from charter.privacy import redact_text

if TYPE_CHECKING:
    from charter._agent import Agent
    from charter._config import Config

__all__ = ["Workflow", "WorkflowFn", "agent_loop", "load_workflows"]

_SHOWN = 300
"""The most of an exception's message a configuration error quotes."""

WorkflowFn = Callable[[Context, Any], Any]
"""`fn(ctx, input)`: returns a `Finish`, or any value (the run then completes as resolved)."""


@dataclass(frozen=True, kw_only=True)
class Workflow:
    """A workflow function and the agent whose identity, contract and tools it runs with.

    Its name is the contract's `workflow`; workers run the runs of the workflows they know.
    """

    agent: Agent
    fn: WorkflowFn

    @property
    def name(self) -> str:
        """The contract's workflow name."""
        return self.agent.contract.workflow


def render(decision: Decision) -> str:
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


def agent_loop(ctx: Context, task: str) -> Finish:
    """The LLM agent workflow: ask the model, pass each tool call it makes through the gate.

    Ends when the model answers without tool calls, a budget stops the run, or `max_turns`
    model turns pass. A held call suspends the run until approvers decide.
    """
    agent = ctx.agent
    contract = agent.contract
    messages = [
        Message(role="system", content=agent.instructions),
        Message(role="user", content=task),
    ]
    specs = agent.tool_specs()
    for _ in range(contract.max_turns):
        # Budgets are the context's to enforce, before every model and tool call, as the
        # contract's `on_exceeded` says.
        response = ctx.model(messages, specs)
        if not response.tool_calls:
            return Finish(reason=response.text or "model ended its turn")
        messages.append(
            Message(role="assistant", content=response.text, tool_calls=response.tool_calls)
        )
        for call in response.tool_calls:
            decision = ctx.tool(call.tool, call.arguments, call_id=call.call_id)
            messages.append(
                Message(role="tool", content=render(decision), tool_call_id=call.call_id)
            )
    return Finish(
        status="failed",
        outcome="failed",
        reason=f"no answer within {contract.max_turns} turns",
        code="max_turns",
    )


def load_workflows(target: str, config: Config) -> list[Workflow]:
    """Import `module:factory` and call `factory(config)` for the workflows it provides.

    The factory must be a function (or other Python callable) returning `Workflow` objects. A
    builtin such as `os:system` is refused before it is called: none returns workflows, and
    some act on whatever they are given.

    Raises:
        ConfigError: The target does not import, is not such a callable, raises, or does not
            provide workflows; the message names the target and, for an exception, its type
            and (redacted) message.
    """
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"--app {target!r} is not module:factory", hint="e.g. --app charter.examples:workflows"
        )
    hint = "--app names module:factory, where factory(config) returns Workflow objects"
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # importing runs the module's own code
        raise ConfigError(f"cannot load {target}: {_described(exc)}", hint=hint) from exc
    if not callable(factory) or inspect.isbuiltin(factory) or inspect.isclass(factory):
        kind = type(factory).__name__
        raise ConfigError(f"{target} is a {kind}, not a workflow factory", hint=hint)
    try:
        provided = factory(config)
        workflows = list(provided) if isinstance(provided, Iterable) else []
    except (Exception, SystemExit) as exc:  # the factory is the user's code
        raise ConfigError(f"{target} raised {_described(exc)}", hint=hint) from exc
    if not workflows or not all(isinstance(w, Workflow) for w in workflows):
        raise ConfigError(
            f"{target} must return Workflow objects, got {type(provided).__name__}", hint=hint
        )
    return workflows


def _described(exc: BaseException) -> str:
    """An exception as its type and redacted message, cut short."""
    text = redact_text(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"
