"""The examples of docs/identity.md and docs/audit.md run as written, twice in one folder.

Shell blocks run in bash with this environment's `charter` first on PATH; Python blocks print
what the comment on their `print` line says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
RUNNABLE = ("identity.md", "audit.md")


def _blocks(language: str) -> list[tuple[str, int, str]]:
    found = []
    for name in RUNNABLE:
        text = (DOCS / name).read_text()
        for index, block in enumerate(re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)):
            found.append((name, index, block))
    return found


@pytest.mark.parametrize(("doc", "index", "block"), _blocks("sh"), ids=lambda v: str(v)[:20])
def test_shell_examples_run_twice(doc: str, index: int, block: str, tmp_path: Path) -> None:
    """Each shell example exits 0, and again when run a second time in the same folder."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for attempt in (1, 2):
        done = subprocess.run(
            ["bash", "-e", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, f"{doc} block {index}, run {attempt}:\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize(("doc", "index", "block"), _blocks("python"), ids=lambda v: str(v)[:20])
def test_python_examples_run_twice(
    doc: str,
    index: int,
    block: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each Python example prints what its `print` line's comment says, twice in one folder."""
    printed = next(line for line in block.splitlines() if line.lstrip().startswith("print("))
    expected = printed.split("#", 1)[1].strip()
    monkeypatch.chdir(tmp_path)
    for _ in (1, 2):
        exec(compile(block, doc, "exec"), {})  # noqa: S102 - the docs' own code
        assert capsys.readouterr().out.strip() == expected
