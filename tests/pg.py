"""PostgreSQL for the tests: the server at 127.0.0.1:5432 when it answers, else a throwaway one.

The throwaway cluster is made with Debian's `initdb` and `pg_ctl` (installed by `make install`
when missing: `scripts/ensure-postgres`), listens on a free port of 127.0.0.1 with trust auth,
and is stopped when the test process ends. Each test gets its own schema in one database, so
tests on two xdist workers never see each other's rows or notifications.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "charter_tests"


@cache
def server() -> str:
    """A URL (to its `postgres` database) of a server the tests may use; started if need be."""
    url = os.environ.get("CHARTER_TEST_POSTGRES") or LOCAL
    if _answers(url):
        return url
    return _throwaway()


@cache
def database_url() -> str:
    """The tests' database on `server()`, created once (races between workers are fine)."""
    base = server()
    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            with contextlib.suppress(
                psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
            ):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    return base.rsplit("/", 1)[0] + "/" + DATABASE


def new_schema() -> tuple[str, str]:
    """A fresh, empty schema: (its name, a URL whose search_path is it)."""
    url = database_url()
    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return name, f"{url}?options={quote(f'-csearch_path={name}')}"


def drop_schema(name: str) -> None:
    """Drop a test's schema and everything in it."""
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _throwaway() -> str:
    """initdb + pg_ctl into a temporary folder; stopped and removed at exit."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    initdb = str(binaries[-1]) if binaries else shutil.which("initdb")
    if initdb is None:
        msg = (
            "no PostgreSQL answers at 127.0.0.1:5432 and initdb is not installed; "
            "run `make install` (it installs Debian's postgresql) or set CHARTER_TEST_POSTGRES"
        )
        raise RuntimeError(msg)
    bin_dir = Path(initdb).parent
    folder = Path(tempfile.mkdtemp(prefix="charter-pg-"))
    data = folder / "data"
    # PostgreSQL refuses to run as root; as root, the cluster belongs to Debian's postgres user.
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, user="postgres")
    port = _free_port()
    subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -k {folder} -c fsync=on"
    subprocess.run(
        [
            *run_as,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(folder / "log"),
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
