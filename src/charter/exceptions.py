"""Every error Charter raises, with a stable code.

The tree::

    CharterError                  every error Charter raises; has a stable `code`
    ├── UserError                 misuse: fix the input and try again
    │   ├── ConfigError           bad settings or database URL
    │   ├── ContractError         a contract file that does not validate
    │   ├── AssessmentError       an autonomy assessment file that does not validate
    │   ├── PolicyLoadError       a Cedar policy or schema that does not parse or validate
    │   ├── PolicyTestError       a malformed policy test table
    │   ├── ToolDefinitionError   a tool declared inconsistently
    │   ├── CredentialError       no credential, or an unknown, expired, revoked or forged one
    │   │   └── NotAuthorized     a good credential whose principal lacks the role or scope
    │   ├── NotFoundError         a run, identity or approval that does not exist
    │   ├── StateError            the right thing in the wrong state (a decided request)
    │   ├── ReasonInvalid         a reason for the audit log that is missing or malformed
    │   └── ApprovalRefused       a vote that does not count (separation of duties, a second vote)
    ├── RunError                  something went wrong while a run executed
    │   ├── ToolError             raised by tool code; `retryable` says whether to try again
    │   │   ├── RetryableToolError
    │   │   └── PermanentToolError
    │   ├── ToolTimeoutError      the tool did not answer within its timeout (retryable)
    │   ├── ToolOutputInvalid     the tool answered with data its output model rejects
    │   ├── ModelError            the model failed or answered with something unusable
    │   │   ├── ModelRateLimited  the provider kept answering 429
    │   │   └── ModelUnavailable  the provider failed (5xx, timeout, connection)
    │   ├── LimitReached          a shared budget or rate limit refused a charge; nothing written
    │   │   ├── BudgetExceeded    a spend cap would be passed
    │   │   └── RateLimited       a token bucket is empty
    │   └── NonDeterminismError   a resumed workflow asked for another step than the log's
    ├── StoreError                the event store is unreachable, or corrupt
    │   ├── PayloadPurged         retention destroyed a raw payload's key
    │   ├── ControlChanged        controls moved under a judged call; nothing written
    │   ├── LeaseLost             a worker wrote after another claimed its run; nothing written
    │   ├── SchemaVersionError    the database was written by a newer Charter
    │   └── SchemaOutdated        the database is older, and automatic upgrade is off
    └── InternalError             never raised: how the CLI reports an unexpected exception

The `charter` command's exit status follows the tree: 2 for a `UserError`, 3 for a
`CredentialError` (a refused credential), 4 for a `StoreError` or `RunError`, 70 for an
internal error; 1 is kept for a check that ran and failed (a broken chain, say).

A denial is *not* an exception: the gate returns a typed `Denied` decision, so an agent loop
never sees an error it could talk its way around. Exceptions are for the code integrating
Charter.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ApprovalRefused",
    "AssessmentError",
    "BudgetExceeded",
    "CharterError",
    "ConfigError",
    "ContractError",
    "ControlChanged",
    "CredentialError",
    "InternalError",
    "LeaseLost",
    "LimitReached",
    "ModelError",
    "ModelRateLimited",
    "ModelUnavailable",
    "NonDeterminismError",
    "NotAuthorized",
    "NotFoundError",
    "PayloadPurged",
    "PermanentToolError",
    "PolicyLoadError",
    "PolicyTestError",
    "RateLimited",
    "ReasonInvalid",
    "RetryableToolError",
    "RunError",
    "SchemaOutdated",
    "SchemaVersionError",
    "StateError",
    "StoreError",
    "ToolDefinitionError",
    "ToolError",
    "ToolOutputInvalid",
    "ToolTimeoutError",
    "UserError",
]


class CharterError(Exception):
    """Base of every error Charter raises."""

    code: ClassVar[str] = "charter_error"
    """Stable, machine-readable identifier; the CLI and API report it verbatim."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        """Create the error.

        Args:
            message: What was wrong, for a person.
            hint: How to fix it, when Charter knows.
        """
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        """Render the message and, if any, the hint on a second line."""
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    def to_dict(self) -> dict[str, str | None]:
        """The one error envelope the CLI's `--json` output uses."""
        return {"code": self.code, "message": self.message, "hint": self.hint}


class UserError(CharterError):
    """Charter was used wrongly: the input must change."""

    code = "user_error"


class ConfigError(UserError):
    """Settings or a database URL that Charter cannot use."""

    code = "config_invalid"


class ContractError(UserError):
    """A contract file that does not validate; the message names file, key path and expectation."""

    code = "contract_invalid"


class AssessmentError(UserError):
    """An assessment file that does not validate; the message names file, key path and problem."""

    code = "assessment_invalid"


class PolicyLoadError(UserError):
    """A Cedar policy or schema that does not parse or validate; the message names the policy."""

    code = "policy_invalid"


class PolicyTestError(UserError):
    """A malformed policy test table (a failing case is reported, not raised)."""

    code = "policy_test_invalid"


class ToolDefinitionError(UserError):
    """A tool declared inconsistently, such as a write tool without idempotency support."""

    code = "tool_definition_invalid"


class CredentialError(UserError):
    """No credential, or one that is unknown, expired, revoked, malformed or forged."""

    code = "credential_invalid"


class NotAuthorized(CredentialError):
    """An authenticated principal without the role or scope the action needs."""

    code = "not_authorized"


class NotFoundError(UserError):
    """A run, identity or approval that does not exist."""

    code = "not_found"


class StateError(UserError):
    """The target exists but is in the wrong state.

    Approving a request that is not pending, cancelling a run that already ended.
    """

    code = "invalid_state"


class ReasonInvalid(UserError):
    """A reason for the audit log that is missing, multi-line or too long."""

    code = "reason_invalid"


class ApprovalRefused(UserError):
    """An approval decision Charter will not count.

    Wrong role, separation of duties, a second vote by the same person, a malformed reason.
    """

    code = "approval_refused"


class RunError(CharterError):
    """Something went wrong while a run executed."""

    code = "run_error"


class ToolError(RunError):
    """Raised by tool code to report a failure; `retryable` tells the engine whether to retry."""

    code = "tool_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        """Create the error.

        `code` replaces the class's code with the downstream API's own (`amount_too_large`),
        which tells an operator more.
        """
        super().__init__(message, hint=hint)
        if code is not None:
            self.code = code  # type: ignore[misc] # a per-instance refinement of the class code


class RetryableToolError(ToolError):
    """A transient failure (rate limit, 5xx, timeout): the same call may succeed later."""

    code = "tool_retryable"
    retryable = True


class PermanentToolError(ToolError):
    """A failure that retrying cannot fix (bad request, not found, conflict)."""

    code = "tool_permanent"


class ToolTimeoutError(RetryableToolError):
    """The tool did not answer within its timeout; its effect may or may not have happened."""

    code = "tool_timeout"


class ToolOutputInvalid(RunError):
    """The tool answered with data its output model rejects; it is never handed on as valid."""

    code = "tool_output_invalid"


class ModelError(RunError):
    """The model failed or produced something that cannot be used (unknown tool, bad JSON)."""

    code = "model_error"


class ModelRateLimited(ModelError):
    """The provider kept answering 429 (rate limited) after the SDK's retries."""

    code = "model_rate_limited"


class ModelUnavailable(ModelError):
    """The provider failed (a 5xx, a timeout or a refused connection) after the SDK's retries."""

    code = "model_unavailable"


class LimitReached(RunError):
    """A shared limit refused a charge; the append that carried it wrote nothing.

    The gate catches it and judges the call again knowing the limit, so a workflow sees a
    `Denied` decision (or a held or stopped run), never this error.
    """

    code = "limit_reached"

    def __init__(self, message: str, *, scope: str, hint: str | None = None) -> None:
        """Name the limit (`scope`) that refused."""
        super().__init__(message, hint=hint)
        self.scope = scope


class BudgetExceeded(LimitReached):
    """A spend cap (per run, per workflow per day, per tenant per day) would be passed."""

    code = "budget_exceeded"

    def __init__(
        self,
        message: str,
        *,
        scope: str,
        cap_usd: float,
        committed_usd: float,
        hint: str | None = None,
    ) -> None:
        """Say which cap, and how much of it is spent or reserved already."""
        super().__init__(message, scope=scope, hint=hint)
        self.cap_usd = cap_usd
        self.committed_usd = committed_usd


class RateLimited(LimitReached):
    """A token bucket is empty; `retry_after_s` says when the next token is due."""

    code = "rate_limited"

    def __init__(
        self, message: str, *, scope: str, retry_after_s: float, hint: str | None = None
    ) -> None:
        """Say which bucket and when it has a token again."""
        super().__init__(message, scope=scope, hint=hint)
        self.retry_after_s = retry_after_s


class NonDeterminismError(RunError):
    """Replaying a run, the workflow asked for a different step than the log recorded."""

    code = "nondeterminism"


class StoreError(CharterError):
    """The event store is unreachable or its contents are inconsistent."""

    code = "store_error"


class PayloadPurged(StoreError):
    """A raw payload's key was destroyed by retention: the payload is gone for good."""

    code = "payload_purged"


class ControlChanged(StoreError):
    """A kill switch, revocation or cancellation changed since the call was judged.

    Raised by an intent's append, which then writes nothing; the gate reloads its view of the
    controls and judges the call again. So a kill switch engaged anywhere binds the very next
    intent, even on a node whose notification has not arrived yet.
    """

    code = "control_changed"

    def __init__(self, message: str, *, version: int) -> None:
        """Carry the control version now in force."""
        super().__init__(message)
        self.version = version


class LeaseLost(StoreError):
    """A worker appended to a run another worker has claimed since (its lease had run out).

    Nothing was written; the other worker carries the run on.
    """

    code = "lease_lost"


class SchemaVersionError(StoreError):
    """The database schema is newer than this Charter knows; refuse rather than corrupt it."""

    code = "schema_too_new"


class SchemaOutdated(StoreError):
    """The database schema is older than this Charter, and automatic upgrade is off."""

    code = "schema_outdated"

    def __init__(
        self, message: str, *, database: str, found: int, latest: int, hint: str | None = None
    ) -> None:
        """Create the error with the database, the version found and the one needed."""
        super().__init__(message, hint=hint)
        self.database = database
        """The database, without its password."""
        self.found = found
        self.latest = latest


class InternalError(CharterError):
    """How the `charter` command reports an exception Charter did not expect: a bug."""

    code = "internal_error"
