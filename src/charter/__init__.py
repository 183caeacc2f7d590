"""Charter: the control plane for LLM agents that act.

Every tool call an agent proposes is authenticated, authorized by Cedar policy, validated,
budgeted, approval-gated where the risk asks for it, executed once, and written to a
hash-chained log from which any run can be explained.
"""

from __future__ import annotations

from charter._agent import Agent
from charter._client import Client
from charter._config import Config
from charter._contract import (
    ApprovalTier,
    Autonomy,
    Contract,
    Effect,
    Environment,
    ToolGrant,
    load_contract,
)
from charter._decision import (
    Allowed,
    CheckResult,
    Decision,
    Denied,
    Failed,
    NeedsApproval,
    Proposed,
)
from charter._identity import IssuedCredential
from charter._plane import ControlPlane, RunResult
from charter._tools import Change, Facts, Tool, ToolContext, tool
from charter.exceptions import CharterError

__all__ = [
    "Agent",
    "Allowed",
    "ApprovalTier",
    "Autonomy",
    "Change",
    "CharterError",
    "CheckResult",
    "Client",
    "Config",
    "Contract",
    "ControlPlane",
    "Decision",
    "Denied",
    "Effect",
    "Environment",
    "Facts",
    "Failed",
    "IssuedCredential",
    "NeedsApproval",
    "Proposed",
    "RunResult",
    "Tool",
    "ToolContext",
    "ToolGrant",
    "load_contract",
    "tool",
]

__version__ = "0.1.0"
