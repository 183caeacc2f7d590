"""Every error Charter raises, with a stable code.

The tree::

    CharterError                  every error Charter raises; has a stable `code`
    ├── UserError                 misuse: fix the input and try again
    │   ├── ConfigError           bad settings or database URL
    │   ├── ContractError         a contract file that does not validate
    │   ├── PolicyLoadError       a Cedar policy or schema that does not parse or validate
    │   ├── PolicyTestError       a malformed policy test table
    │   ├── ToolDefinitionError   a tool declared inconsistently
    │   ├── CredentialError       an unknown, revoked or malformed credential
    │   ├── NotFoundError         a run, identity or approval that does not exist
    │   ├── StateError            the right thing in the wrong state (a decided request)
    │   └── ApprovalRefused       a vote that does not count (role, separation of duties)
    ├── RunError                  something went wrong while a run executed
    │   ├── ToolError             raised by tool code; `retryable` says whether to try again
    │   │   ├── RetryableToolError
    │   │   └── PermanentToolError
    │   ├── ToolTimeoutError      the tool did not answer within its timeout (retryable)
    │   ├── ToolOutputInvalid     the tool answered with data its output model rejects
    │   ├── ModelError            the model failed or answered with something unusable
    │   └── NonDeterminismError   a resumed workflow asked for another step than the log's
    └── StoreError                the event store is unreachable, or corrupt
        ├── LeaseLost             a worker wrote after another claimed its run; nothing written
        └── SchemaVersionError    the database was written by a newer Charter

A denial is *not* an exception: the gate returns a typed `Denied` decision, so an agent loop
never sees an error it could talk its way around. Exceptions are for the code integrating
Charter.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ApprovalRefused",
    "CharterError",
    "ConfigError",
    "ContractError",
    "CredentialError",
    "LeaseLost",
    "ModelError",
    "NonDeterminismError",
    "NotFoundError",
    "PermanentToolError",
    "PolicyLoadError",
    "PolicyTestError",
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
    """A credential that is unknown, revoked or malformed."""

    code = "credential_invalid"


class NotFoundError(UserError):
    """A run, identity or approval that does not exist."""

    code = "not_found"


class StateError(UserError):
    """The target exists but is in the wrong state.

    Approving a request that is not pending, cancelling a run that already ended.
    """

    code = "invalid_state"


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


class NonDeterminismError(RunError):
    """Replaying a run, the workflow asked for a different step than the log recorded."""

    code = "nondeterminism"


class StoreError(CharterError):
    """The event store is unreachable or its contents are inconsistent."""

    code = "store_error"


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
