"""What every console page shares: transactions, the actor, paging, errors."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from flask import abort, current_app, g, request
from flask_login import current_user
from sqlalchemy.orm import Session

from engine.config import Settings
from engine.db import Database
from engine.errors import NotFound, PermissionDenied
from engine.identity import ADMINISTRATOR, Actor

PAGE_SIZE = 25


def database() -> Database:
    return current_app.extensions["database"]


def settings() -> Settings:
    return current_app.extensions["settings"]


@contextmanager
def reading() -> Iterator[Session]:
    """Give the request's read-only session, opened on first use.

    The session stays open until the request ends, so templates can follow
    relationships of what a view loaded; it is rolled back, never committed.
    """
    session = g.get("_read_session")
    if session is None:
        stack = ExitStack()
        session = stack.enter_context(database().read())
        g._read_session, g._read_stack = session, stack
    yield session


@contextmanager
def writing() -> Iterator[Session]:
    """Open a write transaction for an action; it commits when the block ends."""
    with database().write() as session:
        yield session
    # What the request reads after this write must see it: end the read
    # transaction (and its snapshot); the next access starts a new one.
    read_session = g.get("_read_session")
    if read_session is not None:
        read_session.rollback()


class _DryRunOver(Exception):
    """Raised at the end of a dry run so that its transaction rolls back."""


@contextmanager
def rolled_back() -> Iterator[Session]:
    """Open a write transaction of its own that is always rolled back.

    For checks that run the real action (a deployment) and store nothing:
    the request's read session never sees the unstored rows, so the page
    drawn afterwards shows only what is really in the database.
    """
    try:
        with database().write() as session:
            yield session
            raise _DryRunOver
    except _DryRunOver:
        pass


def close_reading(_exc: BaseException | None = None) -> None:
    """Close the request's read session (a teardown handler)."""
    stack = g.pop("_read_stack", None)
    g.pop("_read_session", None)
    if stack is not None:
        stack.close()


def actor() -> Actor:
    return current_user.actor


def require_scope(role: str, domain_path: str, what: str) -> None:
    """Answer 404 unless the actor holds ``role`` over ``domain_path``.

    404 rather than 403: a person outside the domain must not learn that the
    request, instance or user exists at all.
    """
    if not actor().has_role(role, domain_path):
        raise NotFound(f"{what} does not exist or is outside your security domains.")


def require_admin_over(domain_path: str, what: str) -> None:
    require_scope(ADMINISTRATOR, domain_path, what)


def forbid(message: str) -> None:
    raise PermissionDenied(message)


def client_source() -> str:
    return f"web {request.remote_addr or 'unknown'}"


@dataclass
class Page:
    """One page of a longer list, with what the pager needs."""

    items: Sequence[Any]
    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def first_index(self) -> int:
        return (self.number - 1) * self.size + 1 if self.total else 0

    @property
    def last_index(self) -> int:
        return min(self.total, self.number * self.size)


def page_number() -> int:
    """Return the requested page number, 1 when missing or malformed."""
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


def paginate(items: Sequence[Any], size: int = PAGE_SIZE) -> Page:
    """Cut an already filtered and sorted list into the requested page."""
    number = min(page_number(), max(1, math.ceil(len(items) / size)))
    start = (number - 1) * size
    return Page(items[start : start + size], number, size, len(items))


def parse_day(value: str | None, *, end: bool = False) -> datetime | None:
    """Read a YYYY-MM-DD filter as the start (or end) of that day in UTC."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        abort(400, description=f"'{value}' is not a date; write it as YYYY-MM-DD.")
    return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)


def int_arg(name: str) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        abort(400, description=f"'{name}' must be a whole number, not '{value}'.")
