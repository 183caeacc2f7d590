"""The app of the shared rate-limit test: `charter worker --app limits_app:workflows`, with
this folder on PYTHONPATH.

`workflows(config)` gives one workflow, `stamp`: one call of `record_write`, under the contract
file `$LIMITS_APP_CONTRACT`. Each effect of the tool is a line `<pid> <idempotency key>` in
`<home>/effects.log`, so the test sees which process made it.

Two worker processes are meant to share the bucket, so each must take tokens from it: on its
first effect a process waits (up to `HANDSHAKE_S`) until `$LIMITS_APP_WORKERS` processes have
made one. A process that got there first holds one run meanwhile; the other claims the next.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from charter import Agent, Effect, Facts, Tool
from charter.engine import Workflow
from charter.models import ScriptedModel

if TYPE_CHECKING:
    from pathlib import Path

    from charter import ToolContext
    from charter._config import Config
    from charter.engine import Context

CONTRACT_ENV = "LIMITS_APP_CONTRACT"
WORKERS_ENV = "LIMITS_APP_WORKERS"
EFFECTS_FILE = "effects.log"
HANDSHAKE_S = 30.0
"""How long a process waits for the others' first effects before going on alone."""


class Stamp(BaseModel):
    item: str


def stamp(ctx: Context, task: str) -> str:
    """Call `record_write` once; the run completes with the decision's kind."""
    return ctx.tool("record_write", {"item": task}).kind


def _facts(args: Stamp, ctx: ToolContext) -> Facts:
    return Facts(resource_type="Item", resource_id=args.item, resource_tenant=ctx.tenant_id)


def stamp_tool(home: Path, workers: int) -> Tool[Any, Any]:
    """`record_write`, logging each effect with this process's id and meeting the others once."""
    met: list[bool] = []
    pid = os.getpid()

    def run(args: Stamp, ctx: ToolContext) -> Stamp:
        with (home / EFFECTS_FILE).open("a", encoding="utf-8") as log:
            log.write(f"{pid} {ctx.idempotency_key}\n")
        if not met:
            met.append(True)
            (home / f"first-effect-{pid}").touch()
            deadline = time.monotonic() + HANDSHAKE_S
            while len(list(home.glob("first-effect-*"))) < workers:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        return args

    return Tool(
        name="record_write",
        description="stamp an item",
        input_model=Stamp,
        output_model=Stamp,
        effect=Effect.WRITE,
        run=run,
        facts=_facts,
        idempotent=True,
    )


def stamp_workflow(contract: str | Path, home: Path, workers: int = 1) -> Workflow:
    """The `stamp` workflow under `contract`, its effects logged in `home`."""
    agent = Agent.load(
        contract,
        tools=[stamp_tool(home, workers)],
        model=ScriptedModel([], name="limits-unused"),
    )
    return Workflow(agent=agent, fn=stamp)


def workflows(config: Config) -> list[Workflow]:
    """The app's workflows (called by the CLI, not at import)."""
    workers = int(os.environ.get(WORKERS_ENV) or 1)
    return [stamp_workflow(os.environ[CONTRACT_ENV], config.home, workers)]
