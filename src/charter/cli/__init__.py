"""The `charter` command: noun-then-verb commands over one `charter.Client`, one module per noun.

Every command that lists or reports has `--json`. Errors are Charter's typed errors, printed with
their code and hint (and as the JSON error envelope under `--json`); the exit status says what
kind of failure it was (see `charter.cli._common.exit_status`).
"""

from __future__ import annotations

from charter.cli._main import cli, main

__all__ = ["cli", "main"]
