"""A GitHub-Deployments-like sandbox: deploys and rollbacks per repository and environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from charter.sandbox._base import Record, SandboxError, require_text
from charter.sandbox._service import SandboxService

if TYPE_CHECKING:
    import sqlite3

__all__ = ["DEPLOYMENT_STATUSES", "Deployment", "DeploysSandbox"]

DEPLOYMENT_STATUSES = ("queued", "in_progress", "success", "failure", "inactive")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS deployments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        repo TEXT NOT NULL,
        ref TEXT NOT NULL,
        environment TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('queued', 'in_progress', 'success', 'failure', 'inactive')),
        description TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS deployments_by_target ON deployments (repo, environment, id)",
    # At most one live deployment per target, enforced by the database, not just by our code.
    """CREATE UNIQUE INDEX IF NOT EXISTS one_live_deployment
        ON deployments (repo, environment) WHERE status = 'success'""",
)

_LIVE = "SELECT * FROM deployments WHERE repo = ? AND environment = ? AND status = 'success'"


@dataclass(frozen=True, slots=True)
class Deployment(Record):
    """One deployment of `ref` to `environment`; `status` is one of `DEPLOYMENT_STATUSES`."""

    id: int
    repo: str
    ref: str
    environment: str
    status: str
    description: str
    created_at: str


class DeploysSandbox(SandboxService):
    """Deployments that succeed at once; the newest success per target is the live one.

    Endpoints for `inject_fault`: "trigger_deploy", "rollback" and "current".
    """

    schema: ClassVar[tuple[str, ...]] = _SCHEMA
    endpoints: ClassVar[frozenset[str]] = frozenset({"trigger_deploy", "rollback", "current"})

    def trigger_deploy(
        self, *, repo: str, ref: str, environment: str, description: str, idempotency_key: str
    ) -> Deployment:
        """Deploy `ref`; it goes live at once and the previous live deployment goes inactive.

        Args:
            repo: "owner/name".
            ref: Branch, tag or commit to deploy.
            environment: E.g. "production".
            description: Free text shown with the deployment.
            idempotency_key: Makes retries safe; reuse it only for the very same deploy.

        Returns:
            The new, live deployment; a replay returns the original one.

        Raises:
            SandboxError: 400 `parameter_missing`, 400 for key problems, or an injected fault
                (which leaves no deployment behind).
        """
        params = {"repo": repo, "ref": ref, "environment": environment, "description": description}
        response = self._idempotent(
            "trigger_deploy",
            idempotency_key,
            params,
            lambda db: self._deploy(db, repo, ref, environment, description),
        )
        return Deployment.from_dict(response)

    def rollback(self, *, repo: str, environment: str, idempotency_key: str) -> Deployment:
        """Re-deploy the most recent earlier ref that was live, as a new deployment.

        Earlier deployments of the live ref are skipped: rolling back to what is already
        running would change nothing. Two rollbacks in a row therefore toggle between the two
        latest refs, as on GitHub or Heroku.

        Args:
            repo: "owner/name".
            environment: E.g. "production".
            idempotency_key: Makes retries safe; reuse it only for the very same rollback.

        Returns:
            The new, live deployment; a replay returns the original one.

        Raises:
            SandboxError: 409 `nothing_to_roll_back` when nothing is live or no other ref ever
                was, 400 for key problems, or an injected fault.
        """
        params = {"repo": repo, "environment": environment}
        response = self._idempotent(
            "rollback", idempotency_key, params, lambda db: self._rollback(db, repo, environment)
        )
        return Deployment.from_dict(response)

    def _rollback(self, db: sqlite3.Connection, repo: str, environment: str) -> dict[str, Any]:
        require_text(repo=repo, environment=environment)
        live = db.execute(_LIVE, (repo, environment)).fetchone()
        # Only deployments that were once live become inactive, so "inactive" means "was live".
        previous = (
            None
            if live is None
            else db.execute(
                "SELECT ref FROM deployments WHERE repo = ? AND environment = ? "
                "AND status = 'inactive' AND ref != ? AND id < ? ORDER BY id DESC LIMIT 1",
                (repo, environment, live["ref"], live["id"]),
            ).fetchone()
        )
        if live is None or previous is None:
            raise SandboxError(
                code="nothing_to_roll_back",
                status=409,
                message=f"{repo} has no earlier deployment to {environment} to roll back to",
            )
        description = f"Roll back {environment} from {live['ref']} to {previous['ref']}"
        return self._deploy(db, repo, previous["ref"], environment, description)

    def _deploy(
        self, db: sqlite3.Connection, repo: str, ref: str, environment: str, description: str
    ) -> dict[str, Any]:
        require_text(repo=repo, ref=ref, environment=environment)
        db.execute(
            "UPDATE deployments SET status = 'inactive' "
            "WHERE repo = ? AND environment = ? AND status = 'success'",
            (repo, environment),
        )
        row = db.execute(
            "INSERT INTO deployments (repo, ref, environment, status, description, created_at) "
            "VALUES (?, ?, ?, 'success', ?, ?) RETURNING *",
            (repo, ref, environment, description, self.now()),
        ).fetchone()
        return Deployment.from_dict(dict(row)).to_dict()

    def current(self, repo: str, environment: str) -> Deployment | None:
        """The live deployment of `repo` to `environment`, or None if there is none.

        Raises:
            SandboxError: An injected fault.
        """
        self._check_fault("current")
        row = self._read_one(_LIVE, (repo, environment))
        return None if row is None else Deployment.from_dict(dict(row))

    def deployments(self, repo: str, environment: str | None = None) -> list[Deployment]:
        """The deployments of `repo`, to one environment or all, oldest first."""
        rows = self._read_all(
            "SELECT * FROM deployments WHERE repo = ? AND coalesce(environment = ?, 1) ORDER BY id",
            (repo, environment),
        )
        return [Deployment.from_dict(dict(row)) for row in rows]

    def deployment_count(self, repo: str | None = None) -> int:
        """How many deployments exist, of one repository or in all."""
        return self._count("deployments", repo=repo)
