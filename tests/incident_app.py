"""An app for the subprocess workers of `test_incident.py`: a workflow with a call in flight.

`charter worker --app incident_app:workflows` runs it (with this folder on PYTHONPATH). The
workflow `stamping` stamps the items of its task one by one with the write tool `stamp`. Each
stamp appends its idempotency key to the ledger file named by $INCIDENT_LEDGER, so a test can
count effects. The stamp of step `HOLD_STEP` is the call in flight: it prints `IN_FLIGHT
<run id>` on stdout and makes its effect only once a line arrives on stdin, so the test acts
(engages a kill switch) while the worker is inside a tool call, then lets it go. A stdin at EOF
(a worker not meant to hold) fails that call loudly instead of blocking.

The contract is the file $INCIDENT_CONTRACT; `write_agent` writes one, with its policies.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel

from charter import Agent, Effect, Facts, Tool
from charter._decision import Allowed
from charter.engine import Finish, Workflow
from charter.exceptions import PermanentToolError
from charter.models import ScriptedModel

if TYPE_CHECKING:
    from charter import ToolContext
    from charter._config import Config
    from charter.engine import Context

CONTRACT_ENV = "INCIDENT_CONTRACT"
LEDGER_ENV = "INCIDENT_LEDGER"
AGENT = "incident-agent"
WORKFLOW = "stamping"
HOLD_STEP = 2
"""The step whose stamp stays in flight until the test writes a line to the worker's stdin."""
IN_FLIGHT = "IN_FLIGHT"

SCHEMA = (
    "entity Agent = { agent: String, workflow: String, tenant: String, environment: String };\n"
    "entity Item = { tenant: String };\n"
    "type Context = { approvals_granted: Long, hour_utc: Long, weekday: Long, "
    "amount_minor?: Long };\n"
    "action stamp appliesTo { principal: Agent, resource: Item, context: Context };\n"
)
POLICIES = """\
@id("tenant-isolation")
forbid (principal, action, resource)
unless { principal.tenant == resource.tenant };

@id("allow-stamp")
permit (principal, action == Action::"stamp", resource);
"""


def write_agent(folder: Path, *, on_kill: str = "stop") -> Path:
    """Write the stamping contract (with `on_kill`), its policies and schema; the contract path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policies.cedar").write_text(POLICIES)
    (folder / "schema.cedarschema").write_text(SCHEMA)
    contract = {
        "charter": 1,
        "agent": AGENT,
        "version": "1.0",
        "workflow": WORKFLOW,
        "tenants": ["acme", "globex"],
        "on_kill": on_kill,
        # The call in flight waits for the test, which is quick; this only bounds a hang.
        "timeouts": {"tool": "60s"},
        "policy": {"policies": "policies.cedar", "schema": "schema.cedarschema"},
        "tools": {"stamp": {"effect": "write"}},
    }
    path = folder / "contract.yaml"
    path.write_text(yaml.safe_dump(contract))
    return path


class StampIn(BaseModel):
    item: str


class Stamped(BaseModel):
    item: str


def _stamp_tool(ledger: Path) -> Tool[StampIn, Stamped]:
    def stamp(args: StampIn, ctx: ToolContext) -> Stamped:
        if ctx.step == HOLD_STEP:
            print(f"{IN_FLIGHT} {ctx.run_id}", flush=True)  # noqa: T201 - the test reads it
            if not sys.stdin.readline():
                raise PermanentToolError("no go-ahead on stdin: this worker was not to hold")
        with ledger.open("a", encoding="utf-8") as out:
            out.write(ctx.idempotency_key + "\n")
        return Stamped(item=args.item)

    return Tool(
        name="stamp",
        description="Stamp an item.",
        input_model=StampIn,
        output_model=Stamped,
        effect=Effect.WRITE,
        run=stamp,
        facts=lambda args, ctx: Facts(
            resource_type="Item", resource_id=args.item, resource_tenant=ctx.tenant_id
        ),
        idempotent=True,
    )


def stamp_all(ctx: Context, task: dict[str, Any]) -> Finish:
    """Stamp every item in turn; anything but an allowed stamp fails the run."""
    for item in task["items"]:
        decision = ctx.tool("stamp", {"item": item})
        if not isinstance(decision, Allowed):
            return Finish(
                status="failed",
                outcome="failed",
                reason=f"{item}: {type(decision).__name__}",
                code="unexpected",
            )
    return Finish(reason=f"stamped {len(task['items'])}")


def stamping(contract: Path, ledger: Path) -> Workflow:
    """The stamping workflow under `contract`, recording effects in `ledger`."""
    agent = Agent.load(contract, tools=[_stamp_tool(ledger)], model=ScriptedModel([]))
    return Workflow(agent=agent, fn=stamp_all)


def workflows(config: Config) -> list[Workflow]:
    """The app's workflows; reads its settings (called by the CLI, not at import)."""
    del config
    return [stamping(Path(os.environ[CONTRACT_ENV]), Path(os.environ[LEDGER_ENV]))]
