"""Mutation testing of Charter's security-critical modules (`make mutation`).

Each target module is parsed with `ast`, and a fixed set of operators makes small deliberate
bugs in it (mutants): a comparison flipped, an `and` made `or`, a `raise` removed, a deny made a
pass. Each mutant is written over the module in a temporary copy of the repository (the working
tree is never touched), and the tests that exercise the module run against it. A mutant some
test fails on is killed; one that makes a test overrun its deadline is timed out, which counts
as killed; one every test passes survives: a bug the suite would let through.

Store tests run on SQLite first; a survivor is then run on PostgreSQL before it is called one.
Mutants that cannot be killed because they behave exactly as the original are listed, each with
its reason, in `scripts/mutation-equivalent.txt`, and left out of the score, openly.

    python scripts/mutate.py                               # every target module
    python scripts/mutate.py --module gate/_access.py --list
    python scripts/mutate.py --module gate/_access.py --only 104 --json report.json
"""

# ruff: noqa: T201, INP001 - a command-line script, which reports on stdout

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "scripts" / "mutation-equivalent.txt"
TARGETS = (
    "src/charter/gate/*.py",
    "src/charter/policy/*.py",
    "src/charter/store/_votes.py",
    "src/charter/store/_chain.py",
    "src/charter/store/_limits.py",
    "src/charter/privacy/_redact.py",
)
"""The security-critical modules `make mutation` runs over, in this order."""

# Module -> the test files that exercise it, the most direct first (pytest stops at the first
# failure). Each file is one `grep -l` finds in tests/ for the module's names or its messages.
_GATE = ("test_gate_stages.py", "test_gate.py")
TESTS: dict[str, tuple[str, ...]] = {
    # kill switch, principal and grant reasons; identities altered in the database
    "src/charter/gate/_access.py": (*_GATE, "test_security_trust.py", "test_identity.py"),
    # draft, suggest, irreversible and policy holds; escalation past budget
    "src/charter/gate/_approval.py": (*_GATE, "test_approvals.py", "test_limits.py"),
    # ArtifactCache: cached reads and model steps, their keys and sealing
    "src/charter/gate/_cache.py": ("test_gate_stages.py", "test_cache.py", "test_retention.py"),
    # idempotency_key, input_hash, RunState.append/defer
    "src/charter/gate/_call.py": (*_GATE, "test_store.py", "test_engine.py", "test_cache.py"),
    # Controls: kill switches, revocation and cancellation seen at the next call
    "src/charter/gate/_controls.py": (*_GATE, "test_engine.py", "test_identity.py"),
    # Executor: retries, timeouts, output validation
    "src/charter/gate/_execute.py": (
        *_GATE,
        "test_cache.py",
        "test_engine.py",
        "test_telemetry.py",
        "test_gate_stages.py",  # mostly the stages alone; the gate driven without the engine
    ),
    # rate_rule, budget_caps, check_rate_limit, check_budget
    "src/charter/gate/_limits.py": (*_GATE, "test_limits.py", "test_cache.py"),
    # Gate.decide/submit/complete: every end-to-end run
    "src/charter/gate/_pipeline.py": (
        "test_gate.py",
        "test_approvals.py",
        "test_cache.py",
        "test_limits.py",
        "test_incident.py",  # the verifier's cost, counted once its answer is written
        "test_security_input.py",
        "test_engine.py",
        "test_telemetry.py",
        "test_gate_stages.py",  # mostly the stages alone; the gate driven without the engine
    ),
    # check_policy: facts, Cedar request, policy ids
    "src/charter/gate/_policy.py": (*_GATE, "test_security_input.py"),
    # within_limit, bounded_calls, check_input_size/schema/verifiers
    "src/charter/gate/_validate.py": (*_GATE, "test_security_input.py", "test_engine.py"),
    # check_verifier, parse_verdict
    "src/charter/gate/_verifier.py": (*_GATE, "test_incident.py"),
    "src/charter/gate/__init__.py": ("test_exported_members.py",),
    # load_cases, run_cases, `charter policy test`
    "src/charter/policy/_cases.py": ("test_policy.py", "test_cli.py"),
    # CedarPolicy loading and evaluation
    "src/charter/policy/_cedar.py": ("test_policy.py", "test_gate.py"),
    # build_request
    "src/charter/policy/_context.py": ("test_policy.py", "test_gate.py"),
    "src/charter/policy/_engine.py": ("test_policy.py",),
    "src/charter/policy/__init__.py": ("test_exported_members.py",),
    # check_vote, request_status
    "src/charter/store/_votes.py": (
        "test_votes.py",
        "test_approvals.py",
        "test_security_trust.py",
        "test_federation.py",
    ),
    # event_hash, the chain and its verification
    "src/charter/store/_chain.py": ("test_chain.py", "test_store.py"),
    # apply_charges: reservations, settlements, token buckets
    "src/charter/store/_limits.py": ("test_limits.py", "test_store.py"),
    # Redactor: secrets, PII, the corpus
    "src/charter/privacy/_redact.py": (
        "test_redaction_edges.py",
        "test_redact.py",
        "test_redaction_corpus.py",
        "test_security_redaction.py",
    ),
}

COPIED = ("src", "tests", "bench", "docs", "pyproject.toml", "README.md")
"""What of the repository the temporary copy holds: what the tests import or read."""

_FLIPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_OUTCOMES = {"pass", "deny", "hold", "propose", "fail"}
"""A check's outcomes: a mutant makes a refusal pass, and a pass deny."""
_EFFECTS = {"allow", "deny", "approval"}
"""A policy decision's effects: a mutant makes a refusal allow, and an allow deny."""


@dataclass(frozen=True, kw_only=True)
class Mutant:
    """One deliberate bug: `replacement` spliced over a span of the module's source."""

    module: str
    line: int
    col: int
    end_line: int
    end_col: int
    operator: str
    replacement: str
    original: str = ""
    mutated: str = ""

    @property
    def key(self) -> tuple[int, int, str, str]:
        """The mutant's place in the deterministic order."""
        return (self.line, self.col, self.operator, self.replacement)


class _Finder(ast.NodeVisitor):
    """Collects mutants, skipping what is not behaviour (docstrings, annotations, asserts...)."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.found: list[Mutant] = []
        self._generator: list[bool] = []

    def emit(self, operator: str, node: ast.expr | ast.stmt, replacement: str) -> None:
        """Record a mutant: `replacement` in place of `node`'s source."""
        self.found.append(
            Mutant(
                module=self.module,
                line=node.lineno,
                col=node.col_offset,
                end_line=node.end_lineno or node.lineno,
                end_col=node.end_col_offset or node.col_offset,
                operator=operator,
                replacement=replacement,
            )
        )

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        # Decorators and bases are declarations, not behaviour.
        for stmt in node.body:
            self.visit(stmt)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # Decorator arguments (cache sizes) are tuning; annotations are types.
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self._generator.append(_is_generator(node))
        for stmt in node.body:
            self.visit(stmt)
        self._generator.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815 - the visitor's naming

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._generator.append(False)
        self.generic_visit(node)
        self._generator.pop()

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_Assign(self, node: ast.Assign) -> None:
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.orelse:  # the body imports for the type checker only
                self.visit(stmt)
            return
        self.generic_visit(node)

    def visit_Assert(self, node: ast.Assert) -> None:
        """Asserts narrow types for the checker; they are not behaviour (and vanish under -O)."""

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        """f-strings are messages (and their inner positions are unreliable before 3.12)."""

    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            flipped = _FLIPS.get(type(op))
            if flipped is not None:
                ops = [*node.ops[:i], flipped(), *node.ops[i + 1 :]]
                new = ast.Compare(left=node.left, ops=ops, comparators=node.comparators)
                self.emit("compare", node, f"({ast.unparse(new)})")
        for operand in [node.left, *node.comparators]:
            items = operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else []
            for item in [operand, *items]:
                self._empty_string(item)
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self.emit("boolean", node, f"({ast.unparse(ast.BoolOp(op=other, values=node.values))})")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self.emit("not", node, f"({ast.unparse(node.operand)})")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Add | ast.Sub) and not _texty(node.left, node.right):
            other = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
            new = ast.BinOp(left=node.left, op=other, right=node.right)
            self.emit("arith", node, f"({ast.unparse(new)})")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.op, ast.Add | ast.Sub) and not _texty(node.value):
            other = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
            self.emit("arith", node, ast.unparse(ast.AugAssign(node.target, other, node.value)))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self.emit("true-false", node, repr(not value))
        elif isinstance(value, int | float):
            self.emit("number+1", node, repr(value + 1))
            if value != 0:
                self.emit("number=0", node, repr(type(value)(0)))

    def visit_Return(self, node: ast.Return) -> None:
        value = node.value
        if value is None or (isinstance(value, ast.Constant) and value.value is None):
            return
        if not (self._generator and self._generator[-1]):
            self.emit("return-none", value, "None")
        returned = [value]
        while returned:  # what is returned: through tuples and conditional expressions
            item = returned.pop()
            self._empty_string(item)
            if isinstance(item, ast.Tuple):
                returned.extend(item.elts)
            elif isinstance(item, ast.IfExp):
                returned.extend((item.body, item.orelse))
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        self.emit("raise-pass", node, "pass")

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg == "outcome":
            self._verdict(node.value, _OUTCOMES, "pass", "deny")
        elif node.arg == "effect":
            self._verdict(node.value, _EFFECTS, "allow", "deny")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        # A table of check outcomes (a policy effect -> the check's outcome, say).
        texts = [v.value if isinstance(v, ast.Constant) else None for v in node.values]
        if texts and all(t in _OUTCOMES for t in texts):
            for value in node.values:
                self._verdict(value, _OUTCOMES, "pass", "deny")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "denied":
            self.emit("verdict", func, f"{ast.unparse(func.value)}.passed")
        self.generic_visit(node)

    def _empty_string(self, node: ast.expr) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value:
            self.emit("string-empty", node, '""')

    def _verdict(self, node: ast.expr, kinds: set[str], permissive: str, refusal: str) -> None:
        if isinstance(node, ast.Constant) and node.value in kinds:
            other = refusal if node.value == permissive else permissive
            self.emit("verdict", node, repr(other))


def _is_generator(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether the function itself (not a function nested in it) yields."""
    stack: list[ast.AST] = list(node.body)
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Yield | ast.YieldFrom):
            return True
        if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(item))
    return False


def _texty(*nodes: ast.expr) -> bool:
    """Whether an operand is plainly text: `+` there joins strings, and `-` would only crash."""
    for node in nodes:
        if isinstance(node, ast.IfExp) and _texty(node.body, node.orelse):
            return True
        if isinstance(node, ast.JoinedStr) or (
            isinstance(node, ast.Constant) and isinstance(node.value, str)
        ):
            return True
    return False


def splice(source: str, mutant: Mutant) -> tuple[str, str]:
    """The module's source with the mutant in, and the mutated line(s) as one line."""
    # ast columns are UTF-8 byte offsets.
    lines = source.encode().splitlines(keepends=True)
    head = lines[mutant.line - 1][: mutant.col]
    tail = lines[mutant.end_line - 1][mutant.end_col :]
    changed = head + mutant.replacement.encode() + tail
    out = b"".join([*lines[: mutant.line - 1], changed, *lines[mutant.end_line :]])
    return out.decode(), " ".join(changed.decode().split())


def mutants_of(module: str) -> list[Mutant]:
    """Every mutant of `module` (a path from the repository root), in a deterministic order."""
    source = (ROOT / module).read_text(encoding="utf-8")
    finder = _Finder(module)
    finder.visit(ast.parse(source))
    lines = source.splitlines()
    result: dict[tuple[int, int, str, str], Mutant] = {}
    for found in sorted(finder.found, key=lambda m: m.key):
        text, mutated = splice(source, found)
        ast.parse(text)  # a mutant must be valid Python: a syntax error would be a false kill
        original = " ".join(lines[found.line - 1 : found.end_line][0].split())
        result.setdefault(
            found.key, Mutant(**{**asdict(found), "original": original, "mutated": mutated})
        )
    return list(result.values())


@dataclass(frozen=True, kw_only=True)
class Equivalent:
    """An allow-list entry: mutants of `operator` at `module:line[:col]` behave as the original."""

    module: str
    line: int
    col: int | None
    """Where on the line, when two mutants of one operator share it; None: all of them."""
    operator: str
    reason: str

    def covers(self, mutant: Mutant) -> bool:
        """Whether this entry names `mutant`."""
        place = (self.module, self.line, self.operator)
        return place == (mutant.module, mutant.line, mutant.operator) and self.col in (
            None,
            mutant.col,
        )


def load_equivalents(path: Path = EQUIVALENTS) -> list[Equivalent]:
    """`module:line[:col] operator reason...` lines; a line starting with `#` is a comment."""
    entries = []
    if not path.exists():
        return entries
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        place, operator, reason = raw.split(maxsplit=2)
        module, line, *col = place.split(":")
        entries.append(
            Equivalent(
                module=module,
                line=int(line),
                col=int(col[0]) if col else None,
                operator=operator,
                reason=reason,
            )
        )
    return entries


@dataclass(kw_only=True)
class Outcome:
    """What the tests made of one mutant."""

    mutant: Mutant
    status: str
    """killed, timed out, survived or equivalent."""
    seconds: float = 0.0
    reason: str = ""
    """For an equivalent mutant: why it cannot be killed."""


class Sandbox:
    """A temporary copy of the repository, where one mutant at a time is written."""

    def __init__(self) -> None:
        """Copy what the tests need (`COPIED`) into a new temporary folder."""
        self.root = Path(tempfile.mkdtemp(prefix="charter-mutation-"))
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", ".charter*")
                shutil.copytree(source, self.root / name, ignore=ignore)
            elif source.exists():
                shutil.copy2(source, self.root / name)

    def close(self) -> None:
        """Remove the copy."""
        shutil.rmtree(self.root, ignore_errors=True)

    def pytest(
        self, files: tuple[str, ...], *, select: str, deadline: float, timeout: int = 60
    ) -> tuple[str, float, str]:
        """Run `files` in the copy: (passed, failed or timed out; seconds; the output's tail)."""
        present = [f"tests/{name}" for name in files if (self.root / "tests" / name).exists()]
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "--timeout",
            str(timeout),
            "-k",
            select,
            *present,
        ]
        env = {
            **os.environ,
            # The copy's src first: the editable install points at the working tree.
            "PYTHONPATH": f"{self.root / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            # No bytecode cache: a mutant the size of the original, written within the same
            # second, would otherwise run the original's cached bytecode.
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        started = time.monotonic()
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
                command,
                cwd=self.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=deadline,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "timed out", time.monotonic() - started, ""
        seconds = time.monotonic() - started
        output = done.stdout + done.stderr
        if done.returncode in (0, 5):  # 5: nothing selected (no PostgreSQL variant)
            return "passed", seconds, output[-2000:]
        # Any other exit (a failure, or 3 and 4: the tests could not even be collected, as
        # when a mutant breaks the module at import) is the mutant caught: the unmutated
        # copy's run, which must pass first, proves the command itself works.
        timed_out = re.search(r"^E?\s*Failed: Timeout", output, re.MULTILINE) is not None
        return ("timed out" if timed_out else "failed"), seconds, output[-2000:]


def run_module(
    module: str,
    mutants: list[Mutant],
    equivalents: list[Equivalent],
    *,
    verbose: bool,
    sqlite_only: bool = False,
    timeout: int = 60,
) -> list[Outcome] | None:
    """Test every mutant of one module; None if the tests fail on the unmutated copy."""
    files = TESTS[module]
    sandbox = Sandbox()
    target = sandbox.root / module
    original = target.read_text(encoding="utf-8")
    try:
        status, baseline, output = sandbox.pytest(files, select="not postgres", deadline=1800)
        if status != "passed":
            # A mutant "killed" by a test that fails anyway would prove nothing.
            print(f"{module}: the tests fail without any mutant; fix them first:\n{output}")
            return None
        deadline = 4 * baseline + 120
        outcomes = []
        for number, mutant in enumerate(mutants, 1):
            entry = next((e for e in equivalents if e.covers(mutant)), None)
            if entry is not None:
                outcomes.append(Outcome(mutant=mutant, status="equivalent", reason=entry.reason))
                continue
            text, _ = splice(original, mutant)
            target.write_text(text, encoding="utf-8")
            try:
                status, seconds, _ = sandbox.pytest(
                    files, select="not postgres", deadline=deadline, timeout=timeout
                )
                if status == "passed" and not sqlite_only:
                    # Survived SQLite: the PostgreSQL variants of the same tests decide.
                    status, more, _ = sandbox.pytest(
                        files, select="postgres", deadline=deadline, timeout=timeout
                    )
                    seconds += more
            finally:
                target.write_text(original, encoding="utf-8")
            verdict = {"failed": "killed", "passed": "survived"}.get(status, status)
            outcomes.append(Outcome(mutant=mutant, status=verdict, seconds=seconds))
            if verbose:
                print(
                    f"  [{number}/{len(mutants)}] {verdict:<9} {seconds:5.1f}s "
                    f"{mutant.line}:{mutant.operator}  {mutant.mutated}",
                    flush=True,
                )
    finally:
        sandbox.close()
    return outcomes


def summary(outcomes: list[Outcome]) -> dict[str, float | int | None]:
    """The counts and the score: killed and timed out over the mutants that can be killed."""
    count = {s: sum(o.status == s for o in outcomes) for s in ("killed", "timed out", "survived")}
    equivalent = sum(o.status == "equivalent" for o in outcomes)
    killable = len(outcomes) - equivalent
    caught = count["killed"] + count["timed out"]
    return {
        "mutants": len(outcomes),
        "equivalent": equivalent,
        "killed": count["killed"],
        "timed_out": count["timed out"],
        "survived": count["survived"],
        "score": round(100 * caught / killable, 1) if killable else None,
    }


def print_table(results: dict[str, list[Outcome]]) -> None:
    """One row per module, then each survivor and each timed-out mutant."""
    header = ("module", "mutants", "equiv.", "killed", "timed out", "survived", "score")
    rows = []
    for module, outcomes in results.items():
        s = summary(outcomes)
        score = "-" if s["score"] is None else f"{s['score']:.1f}%"
        name = module.removeprefix("src/charter/")
        counts = (s["mutants"], s["equivalent"], s["killed"], s["timed_out"], s["survived"])
        rows.append((name, *map(str, counts), score))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = zip(row, widths, strict=True)
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells)))
    for outcomes in results.values():
        for o in outcomes:
            if o.status in ("survived", "timed out"):
                m = o.mutant
                print(f"{o.status:<9} {m.module}:{m.line} {m.operator:<12} {m.mutated}")


def targets() -> list[str]:
    """Every target module, each of which must have its tests in `TESTS`."""
    found = [str(p.relative_to(ROOT)) for glob in TARGETS for p in sorted(ROOT.glob(glob))]
    missing = [module for module in found if module not in TESTS]
    if missing:
        msg = f"no tests named for {', '.join(missing)}: add them to TESTS in {__file__}"
        raise SystemExit(msg)
    return found


def _resolve(name: str, modules: list[str]) -> str:
    """A target module from its path or a suffix of it (`gate/_access.py`)."""
    matches = [m for m in modules if m == name or m.endswith("/" + name.removeprefix("src/"))]
    if len(matches) != 1:
        msg = f"{name!r} names {len(matches)} target modules; one of: {', '.join(modules)}"
        raise SystemExit(msg)
    return matches[0]


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, list or run the mutants, print the table, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", help="a target module (repeatable)")
    parser.add_argument("--only", type=int, action="append", help="mutants on this line only")
    parser.add_argument("--list", action="store_true", help="list the mutants; run nothing")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--quiet", action="store_true", help="no line per mutant")
    parser.add_argument(
        "--timeout", type=int, default=60, help="seconds a test may take before it times out"
    )
    parser.add_argument(
        "--sqlite-only",
        action="store_true",
        help="do not run SQLite's survivors on PostgreSQL (faster; a mutant only PostgreSQL "
        "would catch counts as survived)",
    )
    args = parser.parse_args(argv)
    modules = targets()
    if args.module:
        modules = [_resolve(m, modules) for m in args.module]
    equivalents = load_equivalents()
    started = time.monotonic()
    results: dict[str, list[Outcome]] = {}
    broken: list[str] = []
    for module in modules:
        mutants = [m for m in mutants_of(module) if not args.only or m.line in args.only]
        if args.list:
            for m in mutants:
                same = next((e for e in equivalents if e.covers(m)), None)
                mark = "  (equivalent)" if same else ""
                print(f"{m.module}:{m.line}:{m.col} {m.operator:<12} {m.mutated}{mark}")
            continue
        print(f"{module}: {len(mutants)} mutants, tests: {' '.join(TESTS[module])}", flush=True)
        outcomes = run_module(
            module,
            mutants,
            equivalents,
            verbose=not args.quiet,
            sqlite_only=args.sqlite_only,
            timeout=args.timeout,
        )
        if outcomes is None:
            broken.append(module)
        else:
            results[module] = outcomes
    if args.list:
        return 0
    _warn_stale(equivalents, modules)
    elapsed = time.monotonic() - started
    print_table(results)
    print(f"took {elapsed / 60:.1f} min")
    if args.json:
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(elapsed),
            "modules": {
                module: {
                    **summary(outcomes),
                    "outcomes": [
                        {**asdict(o.mutant), "status": o.status, "seconds": round(o.seconds, 2)}
                        | ({"reason": o.reason} if o.reason else {})
                        for o in outcomes
                    ],
                }
                for module, outcomes in results.items()
            },
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for module in broken:
        print(f"not run: {module} (its tests fail without a mutant)")
    return 1 if broken else 0


def _warn_stale(equivalents: list[Equivalent], modules: list[str]) -> None:
    """Name allow-list entries that no longer match a mutant: the code moved under them."""
    for entry in equivalents:
        if entry.module in modules and not any(entry.covers(m) for m in mutants_of(entry.module)):
            print(f"warning: stale equivalent entry {entry.module}:{entry.line} {entry.operator}")


if __name__ == "__main__":
    sys.exit(main())
