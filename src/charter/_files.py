"""Reading the files people write: one typed error for each way one can be wrong.

Contracts, assessments, case tables, price tables and identity providers' configurations are
read here. A failure names the file, never prints a traceback, and never echoes what the file
holds.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pathlib import Path

    from charter.exceptions import UserError

__all__ = ["read_data"]


def read_data(file: Path, *, error: type[UserError], what: str, as_json: bool = False) -> Any:  # noqa: ANN401 - any parsed value
    """Parse a YAML (or JSON) file for a strict loader; every failure is `error` naming the file.

    A parser's own message often quotes the offending line (YAML's snippets, a value parser's
    repr): only the line, column and kind of problem are kept, so an error never echoes what
    the file holds.

    Raises:
        UserError: `error`, when the file cannot be read, is not UTF-8 text, nests too deeply,
            or does not parse.
    """
    kind = "JSON" if as_json else "YAML"
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{file}: cannot read {what}: {exc.strerror or type(exc).__name__}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{file}: {what} is not UTF-8 text (byte {exc.start} is not)") from None
    try:
        return json.loads(text) if as_json else yaml.safe_load(text)
    except RecursionError:
        raise error(f"{file}: {what} nests too deeply to read") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "does not parse"
        raise error(
            f"{file}: not valid YAML: {where}{problem}", hint="check indentation and quoting"
        ) from None
    except json.JSONDecodeError as exc:
        raise error(
            f"{file}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - YAML's value constructors raise what they raise
        raise error(
            f"{file}: not valid {kind}: a value cannot be built ({type(exc).__name__})",
            hint="check tagged values (!!) and dates",
        ) from None
