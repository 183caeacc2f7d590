"""Local stand-ins for the third-party APIs Charter's examples call.

`PaymentsSandbox` behaves like Stripe (charges and refunds), `SupportSandbox` like Zendesk
(tickets and macros) and `DeploysSandbox` like GitHub Deployments. Each keeps its state in a
SQLite file, so side effects are real: a test can count refunds, messages or deployments after
an agent run, from another process if it likes.

They share the behaviour that makes agent tool calls safe to retry, modelled on Stripe:

* every write takes an idempotency key; a replay with the same key and parameters returns the
  first answer (or re-raises its 4xx error) without a second effect, and the same key with
  other parameters is `idempotency_key_reused`;
* 429 and 5xx outcomes are never stored, so a retry with the same key gets a fresh attempt;
* `inject_fault` makes the next calls of an endpoint fail before any effect, to test retries.

Errors are `SandboxError`s carrying an HTTP-like `status`, a `code` and `retryable`. The
package knows nothing about Charter; Charter's tool adapters call it.
"""

from __future__ import annotations

from charter.sandbox._base import Clock, Record, SandboxError
from charter.sandbox._deploys import DEPLOYMENT_STATUSES, Deployment, DeploysSandbox
from charter.sandbox._payments import Charge, PaymentsSandbox, Refund
from charter.sandbox._service import SandboxService
from charter.sandbox._support import (
    TICKET_STATUSES,
    Macro,
    SentMessage,
    SupportSandbox,
    Ticket,
)

__all__ = [
    "DEPLOYMENT_STATUSES",
    "TICKET_STATUSES",
    "Charge",
    "Clock",
    "Deployment",
    "DeploysSandbox",
    "Macro",
    "PaymentsSandbox",
    "Record",
    "Refund",
    "SandboxError",
    "SandboxService",
    "SentMessage",
    "SupportSandbox",
    "Ticket",
]
