"""Example agents with their contracts, Cedar policies, policy tests and tools.

- `billing/`: the billing-dispute agent (payments + support tools), used by `charter demo`.
- `deploys/`: a deploy gate (trigger_deploy, rollback) with change windows.
- `support/`: a support-macro agent (create_ticket, send_macro) with data classes.
"""

from __future__ import annotations

from charter.examples._demo import (
    APPROVER,
    BILLING,
    DemoReport,
    Dispute,
    billing_workflow,
    run_demo,
    tally,
    workflows,
)
from charter.examples._deploys import deploy_tools, in_change_window
from charter.examples._payments import payments_tools
from charter.examples._support import support_tools

__all__ = [
    "APPROVER",
    "BILLING",
    "DemoReport",
    "Dispute",
    "billing_workflow",
    "deploy_tools",
    "in_change_window",
    "payments_tools",
    "run_demo",
    "support_tools",
    "tally",
    "workflows",
]
