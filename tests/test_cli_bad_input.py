"""Every `charter` command refuses bad input cleanly: no traceback, the exit-status rule, and
the JSON error envelope under `--json`.

The commands are found by walking the click group, subgroups included, so a command added later
is covered as soon as it is registered. The bad inputs are derived from each command's own
parameters: a file argument gets missing, binary, deeply nested and otherwise broken files; an
id gets an id that does not exist; a choice, a number or a range gets a value outside it; every
command gets an option it does not have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click
import pytest
from click.testing import CliRunner

from charter.cli import cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from click.testing import Result

REFUSED = {2, 3}
"""Bad input (2), or a credential refused before the input was looked at (3)."""
ACCEPTED_OR_REFUSED = {0, *REFUSED}
"""For values that may be fine (a filter nothing matches): refused cleanly, or accepted."""
UNKNOWN_ID = "nope_0000000000000000"

BAD_FILES: dict[str, bytes | None] = {
    "missing.yaml": None,
    "binary.yaml": bytes(range(128, 256)) * 8 + bytes(range(128)),
    "nested.yaml": b"[" * 5000,
    "nested.json": b"[" * 5000,
    "empty.yaml": b"",
    "scalar.yaml": b"just a line of text\n",
    "tagged.yaml": b"a: !!python/name:os.system\n",
    "bad-date.yaml": b"a: 2020-13-45\n",
    "bad-float.yaml": b"a: !!float not-a-number\n",
    "bad-timestamp.yaml": b"a: !!timestamp not-a-time\n",
    "folder": b"",
}
"""Files a command may be given; `None`: the file does not exist; `folder` is a directory."""


def _leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _leaves(command, (*path, name))
        else:
            yield (*path, name)


COMMANDS = list(_leaves(cli))


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@dataclass(frozen=True)
class Case:
    """One bad invocation: the arguments after the command's name, and how strict to be."""

    args: tuple[str, ...]
    strict: bool
    """Must be refused; otherwise accepting it is fine too (a filter that matches nothing)."""


def _is_input_path(param: click.Parameter) -> bool:
    kind = param.type
    if isinstance(kind, click.File):
        return "r" in kind.mode
    return isinstance(kind, click.Path) and not kind.writable


def _is_output_path(param: click.Parameter) -> bool:
    kind = param.type
    if isinstance(kind, click.File):
        return "w" in kind.mode
    return isinstance(kind, click.Path) and kind.writable


def _is_number(param: click.Parameter) -> bool:
    return isinstance(param.type, click.types.IntParamType | click.types.FloatParamType)


def _is_id(param: click.Parameter) -> bool:
    return isinstance(param, click.Argument) and str(param.name).endswith("id")


def _filler(param: click.Parameter, files: dict[str, str], file: str) -> list[str]:
    """A value for a required parameter, so a case reaches the parameter it is about."""
    if _is_input_path(param) or _is_output_path(param):
        value = files[file]
    elif isinstance(param.type, click.Choice):
        value = str(param.type.choices[0])
    elif _is_number(param):
        value = "1"
    elif _is_id(param):
        value = UNKNOWN_ID
    else:
        value = "bad-input-test"
    return [param.opts[0], value] if isinstance(param, click.Option) else [value]


def _bad_values(param: click.Parameter, files: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(value, file the other files are, strict) for each bad value of one parameter."""
    if _is_input_path(param):
        return [(files[name], name, True) for name in BAD_FILES]
    if _is_output_path(param):
        nowhere = files["missing.yaml"] + "/in/no/folder.out"
        return [(files["folder"], "binary.yaml", True), (nowhere, "binary.yaml", True)]
    if isinstance(param.type, click.Choice):
        return [("not-a-choice", "binary.yaml", True)]
    if _is_number(param):
        low = getattr(param.type, "min", None)
        below = [] if low is None else [(str(low - 1), "binary.yaml", True)]
        return [("not-a-number", "binary.yaml", True), *below]
    if _is_id(param):
        return [(UNKNOWN_ID, "binary.yaml", True)]
    maybe = ("", "\x00", "../../../../etc/passwd", UNKNOWN_ID, "os:system")
    return [(value, "binary.yaml", False) for value in maybe]


def _cases(command: click.Command, files: dict[str, str]) -> list[Case]:
    """The bad invocations of `command`, derived from its parameters."""

    def invocation(subject: click.Parameter | None, value: str, file: str) -> tuple[str, ...]:
        # In the order the command declares them: positional arguments keep their places.
        args: list[str] = []
        for param in command.params:
            if param is subject:
                args += [param.opts[0], value] if isinstance(param, click.Option) else [value]
            elif param.required:
                args += _filler(param, files, file)
        return tuple(args)

    cases = [Case(args=(*invocation(None, "", "binary.yaml"), "--no-such-option"), strict=True)]
    for param in command.params:
        if isinstance(param, click.Option) and (param.is_flag or param.count):
            continue
        for value, file, strict in _bad_values(param, files):
            cases.append(Case(args=invocation(param, value, file), strict=strict))
    return cases


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Every bad file of `BAD_FILES`, written under tmp_path: name -> path."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    found = {}
    for name, content in BAD_FILES.items():
        path = folder / name
        if name == "folder":
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        found[name] = str(path)
    return found


def _problems(case: Case, result: Result, *, as_json: bool) -> list[str]:
    """What is wrong with how the command answered `case`; empty when it answered well."""
    shown = f"{' '.join(case.args)!r}{' --json' if as_json else ''}"
    output = result.stdout + result.stderr
    problems = []
    if "Traceback" in output:
        problems.append(f"{shown}: a traceback")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        problems.append(f"{shown}: raised {type(result.exception).__name__}")
    allowed = REFUSED if case.strict else ACCEPTED_OR_REFUSED
    if result.exit_code not in allowed:
        problems.append(f"{shown}: exit {result.exit_code}, expected one of {sorted(allowed)}")
    if as_json and result.exit_code != 0:
        try:
            envelope = json.loads(result.stdout)
        except ValueError:
            problems.append(f"{shown}: not the JSON error envelope: {result.stdout[:200]!r}")
        else:
            if list(envelope) != ["error"] or set(envelope["error"]) != {"code", "message", "hint"}:
                problems.append(f"{shown}: not the JSON error envelope: {envelope!r}")
    return problems


class TestBadInput:
    @pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
    def test_every_bad_input_is_refused_cleanly(
        self,
        path: tuple[str, ...],
        files: dict[str, str],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Each bad input derived from the command's parameters ends without a traceback, with
        the exit status of the rule, and under --json with the error envelope."""
        command = _command(path)
        home = tmp_path / "home"
        env = {"CHARTER_DATABASE_URL": f"sqlite://{tmp_path / 'charter.db'}"}
        has_json = any(p.name == "as_json" for p in command.params)
        runner = CliRunner()
        problems: list[str] = []
        # Whatever a command writes where it is run (a new one might) stays in the test's folder.
        (tmp_path / "cwd").mkdir()
        monkeypatch.chdir(tmp_path / "cwd")
        for case in _cases(command, files):
            for as_json in (False, True) if has_json else (False,):
                args = ["--home", str(home), *path, *case.args, *(["--json"] * as_json)]
                result = runner.invoke(cli, args, env=env)
                problems += _problems(case, result, as_json=as_json)
        assert not problems, "\n".join(problems)

    def test_a_home_that_is_a_file_is_refused(self, files: dict[str, str]) -> None:
        """`--home` naming a file is a usage error (exit 2), with no traceback."""
        result = CliRunner().invoke(cli, ["--home", files["binary.yaml"], "runs", "list"])
        assert "Traceback" not in result.output
        assert result.exit_code == 2, result.output

    def test_the_walk_finds_subcommands(self) -> None:
        """The walk reaches commands inside groups, nested ones included."""
        assert ("contract", "validate") in COMMANDS
        assert ("contract", "lint") in COMMANDS
        assert all(not isinstance(_command(p), click.Group) for p in COMMANDS)
