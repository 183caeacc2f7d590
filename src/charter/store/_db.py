"""The little a SQL store needs from a database driver, as both sqlite3 and psycopg give it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["Cursor", "Db", "Row"]


class Row(Protocol):
    """A result row, read by column name or position (like `sqlite3.Row`)."""

    def keys(self) -> list[str]:
        """The column names."""
        ...

    def __getitem__(self, key: int | str, /) -> Any:  # noqa: ANN401 - a column's value
        """One column's value."""
        ...


class Cursor(Protocol):
    """The result of one statement."""

    @property
    def rowcount(self) -> int:
        """Rows an UPDATE or DELETE touched."""
        ...

    def fetchone(self) -> Any:  # noqa: ANN401 - a Row, or None
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        ...


class Db(Protocol):
    """A connection inside a transaction; statements use `?` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        """Run one statement."""
        ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> object:
        """Run one statement for each parameter row."""
        ...
