"""Deploy tools over the GitHub-Deployments-like sandbox: `trigger_deploy` and `rollback`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from charter._contract import Effect
from charter._tools import Change, Facts, Tool, ToolContext
from charter.examples._adapter import calling

if TYPE_CHECKING:
    from collections.abc import Callable

    from charter.sandbox import Deployment, DeploysSandbox

__all__ = ["DeployRequest", "DeploymentView", "RollbackRequest", "deploy_tools", "in_change_window"]

Repo = Annotated[str, Field(pattern=r"^[a-z0-9_.-]+/[a-z0-9_.-]+$")]
Target = Literal["staging", "production"]


class DeployRequest(BaseModel):
    """Input of `trigger_deploy`."""

    model_config = ConfigDict(extra="forbid")
    repo: Repo
    ref: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]{1,100}$")]
    environment: Target
    description: Annotated[str, Field(max_length=300)] = ""
    severity: int = Field(default=0, ge=0, le=4)
    """Incident severity this deploy responds to (0 = routine, 1 = worst)."""


class RollbackRequest(BaseModel):
    """Input of `rollback`."""

    model_config = ConfigDict(extra="forbid")
    repo: Repo
    environment: Target


class DeploymentView(BaseModel):
    """Output of both tools."""

    model_config = ConfigDict(extra="forbid")
    id: int = Field(gt=0)
    repo: str
    ref: str
    environment: str
    status: Literal["queued", "in_progress", "success", "failure", "inactive"]


def _view(made: Deployment) -> DeploymentView:
    return DeploymentView(
        id=made.id,
        repo=made.repo,
        ref=made.ref,
        environment=made.environment,
        status=made.status,
    )


def in_change_window(now: datetime) -> bool:
    """Monday to Thursday, 09:00 to 16:00 UTC: when people are around to watch a deploy."""
    return now.isoweekday() <= 4 and 9 <= now.hour < 16  # noqa: PLR2004


def deploy_tools(
    sandbox: DeploysSandbox, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> list[Tool[Any, Any]]:
    """`trigger_deploy` and `rollback` bound to one deploys sandbox."""

    def view(repo: str, environment: str, ctx: ToolContext) -> Facts:
        return Facts(
            resource_type="Environment",
            resource_id=f"{repo}:{environment}",
            resource_tenant=ctx.tenant_id,
            environment=environment,
            in_change_window=in_change_window(clock()),
        )

    def deploy(args: DeployRequest, ctx: ToolContext) -> DeploymentView:
        made = calling(
            lambda: sandbox.trigger_deploy(
                repo=args.repo,
                ref=args.ref,
                environment=args.environment,
                description=args.description,
                idempotency_key=ctx.idempotency_key,
            )
        )
        return _view(made)

    def deploy_facts(args: DeployRequest, ctx: ToolContext) -> Facts:
        return view(args.repo, args.environment, ctx).model_copy(update={"severity": args.severity})

    def deploy_preview(args: DeployRequest, ctx: ToolContext) -> list[Change]:
        live = calling(lambda: sandbox.current(args.repo, args.environment))
        return [
            Change(
                path=f"{args.repo}/{args.environment}/ref",
                before=live.ref if live else None,
                after=args.ref,
            )
        ]

    def rollback(args: RollbackRequest, ctx: ToolContext) -> DeploymentView:
        made = calling(
            lambda: sandbox.rollback(
                repo=args.repo, environment=args.environment, idempotency_key=ctx.idempotency_key
            )
        )
        return _view(made)

    def rollback_facts(args: RollbackRequest, ctx: ToolContext) -> Facts:
        return view(args.repo, args.environment, ctx)

    return [
        Tool(
            name="trigger_deploy",
            description="Deploy a ref of a repository to staging or production.",
            input_model=DeployRequest,
            output_model=DeploymentView,
            effect=Effect.WRITE,
            run=deploy,
            facts=deploy_facts,
            preview=deploy_preview,
            idempotent=True,
        ),
        Tool(
            name="rollback",
            description="Roll an environment back to the previous live ref.",
            input_model=RollbackRequest,
            output_model=DeploymentView,
            effect=Effect.WRITE,
            run=rollback,
            facts=rollback_facts,
            idempotent=True,
        ),
    ]
