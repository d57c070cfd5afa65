"""Bulk requests: a CSV file of users and token types becomes one request each.

The file has the header ``username,domain,token_type`` and optionally the
columns ``token_model`` and ``shipping_address``. Every line is submitted on
behalf of the user it names, by an administrator whose scope covers that
user's security domain; the user is the requester, so separation of duties
treats the request as theirs. Each line runs in its own transaction: a bad
line is reported with its number and the reason, and the others go on.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..db import Database
from ..errors import ProvisioningError, ValidationFailed
from ..identity import Actor
from ..models import User
from .inventory_models import TokenClass, TokenModel
from .requests import submit_request

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("username", "domain", "token_type")
OPTIONAL_COLUMNS = ("token_model", "shipping_address")


@dataclass(frozen=True)
class BulkLine:
    """One data line of a bulk request file."""

    line: int
    username: str
    domain: str
    token_type: str
    token_model: str = ""
    shipping_address: str = ""


@dataclass(frozen=True)
class BulkRow:
    """What became of one line: the request submitted, or why not."""

    line: int
    username: str
    ok: bool
    message: str
    request_id: int | None = None

    def __str__(self) -> str:
        return f"line {self.line} ({self.username or 'no user'}): {self.message}"


@dataclass
class BulkReport:
    """The result of a bulk request file, one row per data line."""

    rows: list[BulkRow] = field(default_factory=list)

    @property
    def submitted(self) -> list[BulkRow]:
        return [r for r in self.rows if r.ok]

    @property
    def failed(self) -> list[BulkRow]:
        return [r for r in self.rows if not r.ok]

    def __str__(self) -> str:
        lines = [str(r) for r in self.rows]
        lines.append(
            f"{len(self.submitted)} submitted, {len(self.failed)} refused, "
            f"{len(self.rows)} lines."
        )
        return "\n".join(lines)


SessionSource = Database | Callable[[], Any]


def read_csv(data: bytes | str, *, max_bytes: int | None = None) -> list[BulkLine]:
    """Parse a bulk request file.

    :raises ValidationFailed: the file is too large, not UTF-8, empty, or its
        header lacks a required column or has an unknown one. Line errors are
        not raised here; :func:`submit_lines` reports them per line.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise ValidationFailed(
            f"The file is {len(data)} bytes, more than the limit of {max_bytes}; "
            "split it into smaller files."
        )
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ValidationFailed(
                f"The file is not UTF-8 text (byte {err.start} cannot be read); "
                "save it as CSV UTF-8 and try again."
            ) from None
    reader = csv.reader(io.StringIO(data))
    header = next(reader, None)
    expected = ",".join(REQUIRED_COLUMNS)
    if not header or not any(h.strip() for h in header):
        raise ValidationFailed(
            f"The file is empty; its first line must be the header {expected}."
        )
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(unknown)}")
        raise ValidationFailed(
            f"The header '{','.join(header)}' is wrong ({'; '.join(problems)}); it "
            f"must be {expected}, optionally followed by "
            f"{' and '.join(OPTIONAL_COLUMNS)}."
        )

    lines = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        padded = [v.strip() for v in values] + [""] * (len(columns) - len(values))
        row = dict(zip(columns, padded, strict=False))
        lines.append(
            BulkLine(
                line=reader.line_num,
                username=row["username"],
                domain=row["domain"],
                token_type=row["token_type"].lower(),
                token_model=row.get("token_model", ""),
                shipping_address=row.get("shipping_address", ""),
            )
        )
    return lines


def submit_csv(
    session_factory_or_db: SessionSource,
    actor: Actor,
    data: bytes | str,
    settings: Settings,
    *,
    on_row: Callable[[BulkRow], None] | None = None,
) -> BulkReport:
    """Submit one new token request per line of a bulk request file.

    :param session_factory_or_db: a :class:`engine.db.Database`, or a
        SQLAlchemy ``sessionmaker``; each line gets its own transaction.
    :param actor: the administrator submitting the file.
    :param on_row: called after each line, for a progress bar.
    :returns: the report, one row per data line, in file order.
    :raises ValidationFailed: the file as a whole is unreadable (see
        :func:`read_csv`); nothing was submitted.
    """
    lines = read_csv(data, max_bytes=settings.max_upload_bytes)
    return submit_lines(session_factory_or_db, actor, lines, settings, on_row=on_row)


def submit_lines(
    session_factory_or_db: SessionSource,
    actor: Actor,
    lines: Iterable[BulkLine],
    settings: Settings,
    *,
    on_row: Callable[[BulkRow], None] | None = None,
) -> BulkReport:
    """Submit parsed lines of a bulk request file; see :func:`submit_csv`."""
    report = BulkReport()
    for line in lines:
        try:
            with _transaction(session_factory_or_db) as session:
                row = _submit_line(session, actor, line, settings)
        except ProvisioningError as err:
            row = BulkRow(line.line, line.username, False, _message(err))
        report.rows.append(row)
        if on_row is not None:
            on_row(row)

    logger.info(
        "Bulk requests by %s: %d submitted, %d refused",
        actor.username,
        len(report.submitted),
        len(report.failed),
        extra={"actor": actor.username},
    )
    return report


@contextmanager
def _transaction(source: SessionSource) -> Iterator[Session]:
    """Open a write transaction on a Database or a plain session factory."""
    if isinstance(source, Database):
        with source.write() as session:
            yield session
        return
    session = source()
    try:
        with session.begin():
            yield session
    finally:
        session.close()


def _submit_line(
    session: Session, actor: Actor, line: BulkLine, settings: Settings
) -> BulkRow:
    def refused(message: str) -> BulkRow:
        return BulkRow(line.line, line.username, False, message)

    if not line.username:
        return refused("username is empty; give the user name of the token's owner.")
    if line.token_type not in TokenClass.ALL:
        return refused(
            f"token_type '{line.token_type}' is unknown; write hardware or software."
        )
    user = session.scalars(select(User).where(User.username == line.username)).first()
    if user is not None and user.domain.path != line.domain:
        return refused(
            f"{line.username} is in security domain '{user.domain.path}', not "
            f"'{line.domain}'; correct the domain column."
        )
    model = line.token_model or _only_model(session, line.token_type)
    if not model:
        codes = _model_codes(session, line.token_type)
        return refused(
            f"token_model is empty and there are several {line.token_type} "
            f"models ({', '.join(codes)}); name one."
            if codes
            else f"no {line.token_type} token model is offered; ask a token "
            "administrator to add one."
        )

    form = {
        "token_class": line.token_type,
        "token_model": model,
        "shipping_address": line.shipping_address,
        "justification": f"Bulk request by {actor.username} (file line {line.line})",
    }
    request = submit_request(
        session,
        actor=actor,
        request_type="new_token",
        form=form,
        settings=settings,
        on_behalf_of=line.username,
        require_shipping_address=False,
    )
    return BulkRow(
        line.line,
        line.username,
        True,
        f"request {request.id} submitted ({line.token_type} token {model})",
        request.id,
    )


def _model_codes(session: Session, token_class: str) -> list[str]:
    return list(
        session.scalars(
            select(TokenModel.code)
            .where(TokenModel.token_class == token_class, TokenModel.active)
            .order_by(TokenModel.code)
        )
    )


def _only_model(session: Session, token_class: str) -> str:
    codes = _model_codes(session, token_class)
    return codes[0] if len(codes) == 1 else ""


def _message(err: ProvisioningError) -> str:
    if isinstance(err, ValidationFailed) and err.field_errors:
        return " ".join(err.field_errors.values())
    return str(err)
