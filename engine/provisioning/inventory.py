"""The token inventory: token models, import, scope, assignment and lifecycle.

Every change of a token's state goes through :func:`change_state`, which
refuses a move the lifecycle does not allow and writes the token's history.
Token administrators and distributors act only on tokens whose inventory
domain lies within the domains their roles cover; the system actor (service
tasks, the operator at the command line) is not limited.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .. import audit
from ..errors import ConflictError, NotFound, PermissionDenied, ValidationFailed
from ..identity import (
    ADMINISTRATOR,
    SYSTEM_ACTOR,
    TOKEN_ADMINISTRATOR,
    TOKEN_DISTRIBUTOR,
    Actor,
    in_scope,
)
from ..models import utcnow
from .directory import find_domain, get_user, unknown_domain_message
from .inventory_models import Token, TokenClass, TokenEvent, TokenModel, TokenState

logger = logging.getLogger(__name__)

S = TokenState
TRANSITIONS: dict[str, frozenset[str]] = {
    S.AVAILABLE: frozenset({S.ASSIGNED, S.DISABLED, S.LOST, S.EXPIRED}),
    S.ASSIGNED: frozenset(
        {S.SHIPPED, S.ACTIVE, S.AVAILABLE, S.DISABLED, S.LOST, S.EXPIRED}
    ),
    S.SHIPPED: frozenset({S.ACTIVE, S.DISABLED, S.LOST, S.EXPIRED}),
    S.ACTIVE: frozenset({S.DISABLED, S.LOST, S.EXPIRED}),
    S.DISABLED: frozenset({S.AVAILABLE, S.ACTIVE, S.LOST}),
    S.LOST: frozenset({S.DISABLED}),
    S.EXPIRED: frozenset({S.DISABLED, S.LOST}),
}

# What a person can do about a refused move, by the state they asked for.
_ADVICE = {
    S.ASSIGNED: "choose a token in state available.",
    S.SHIPPED: "only an assigned hardware token can be shipped.",
    S.ACTIVE: (
        "only a shipped hardware token, an assigned software token or a "
        "disabled token can be enabled."
    ),
    S.AVAILABLE: "disable it first, or leave it with its owner.",
    S.DISABLED: "it is disabled already.",
    S.LOST: "it is marked lost already.",
    S.EXPIRED: "a disabled or lost token cannot expire; leave it as it is.",
}

MANAGING_ROLES = (TOKEN_ADMINISTRATOR, ADMINISTRATOR)
DISTRIBUTING_ROLES = (TOKEN_DISTRIBUTOR, TOKEN_ADMINISTRATOR, ADMINISTRATOR)

CSV_HEADER = ("serial", "model", "expiry")
CHOOSE_ANOTHER = "choose another serial."
_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


# -- lifecycle -------------------------------------------------------------------


def change_state(
    session: Session, token: Token, to_state: str, *, actor: str, message: str = ""
) -> TokenEvent:
    """Move ``token`` to ``to_state`` and record it in the token's history.

    :param actor: the username of whoever caused the change ("system" for
        service tasks).
    :returns: the new history entry.
    :raises ConflictError: the lifecycle does not allow the move; the message
        names the serial, the current state and what to do.
    """
    current = token.state
    if to_state not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, ()))) or "nothing"
        raise ConflictError(
            f"Token {token.serial} is {current} and cannot become {to_state} "
            f"(from {current} it can become: {allowed}); "
            f"{_ADVICE.get(to_state, 'check the token history.')}"
        )

    token.state = to_state
    token.updated_at = utcnow()
    event = TokenEvent(
        token=token,
        actor=actor,
        from_state=current,
        to_state=to_state,
        message=message,
    )
    session.add(event)
    session.flush()
    logger.info(
        "Token %s went from %s to %s",
        token.serial,
        current,
        to_state,
        extra={"serial": token.serial, "actor": actor},
    )

    return event


def record_event(session: Session, token: Token, *, actor: str, message: str) -> None:
    """Add a history entry to ``token`` that does not change its state."""
    session.add(
        TokenEvent(
            token=token,
            actor=actor,
            from_state=token.state,
            to_state=token.state,
            message=message,
        )
    )
    token.updated_at = utcnow()
    session.flush()


# -- token models ------------------------------------------------------------------


def create_token_model(
    session: Session,
    *,
    code: str,
    name: str,
    token_class: str,
    description: str = "",
) -> TokenModel:
    """Add a hardware token model or software token profile.

    :raises ValidationFailed: the code is empty or the class unknown.
    :raises ConflictError: the code is taken.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,49}", code or ""):
        raise ValidationFailed(
            f"Token model code '{code}' is not valid: use letters, digits, '-' "
            "and '_', such as SID700."
        )
    if token_class not in TokenClass.ALL:
        raise ValidationFailed(
            f"Token class '{token_class}' is unknown; use hardware or software."
        )
    if find_model(session, code) is not None:
        raise ConflictError(f"Token model '{code}' exists already.")

    model = TokenModel(
        code=code, name=name, token_class=token_class, description=description
    )
    session.add(model)
    session.flush()

    return model


def find_model(session: Session, code: str) -> TokenModel | None:
    """Return the token model with ``code``, or None."""
    return session.scalars(select(TokenModel).where(TokenModel.code == code)).first()


def get_model(session: Session, code: str) -> TokenModel:
    """Return the active token model with ``code``; raise NotFound otherwise."""
    model = find_model(session, code)
    if model is None or not model.active:
        known = ", ".join(m.code for m in list_models(session)) or "none"
        raise NotFound(f"Unknown token model '{code}'; known models: {known}.")
    return model


def list_models(session: Session, token_class: str | None = None) -> list[TokenModel]:
    """Return the active token models, optionally of one class, by code."""
    query = select(TokenModel).where(TokenModel.active).order_by(TokenModel.code)
    if token_class:
        query = query.where(TokenModel.token_class == token_class)
    return list(session.scalars(query))


# -- scope ---------------------------------------------------------------------------


def may_act_on(actor: Actor, path: str, roles: tuple[str, ...]) -> bool:
    """Return whether the actor holds one of ``roles`` over inventory ``path``."""
    return actor == SYSTEM_ACTOR or any(
        role in roles and in_scope(scope, path) for role, scope in actor.grants
    )


def _require(actor: Actor, token: Token, roles: tuple[str, ...], action: str) -> None:
    if may_act_on(actor, token.domain_path, roles):
        return
    scopes = sorted({s for r, s in actor.grants if r in roles}) or ["none"]
    raise PermissionDenied(
        f"{actor.username} may not {action} token {token.serial}: it belongs to "
        f"the inventory of '{token.domain_path}', outside your scope "
        f"({', '.join(scopes)}). Ask a token administrator of that domain."
    )


def _scope_filter(actor: Actor, roles: tuple[str, ...]):
    if actor == SYSTEM_ACTOR:
        return None
    scopes = sorted({s for r, s in actor.grants if r in roles})
    if not scopes:
        return Token.id.is_(None)
    return or_(
        *(
            or_(Token.domain_path == s, Token.domain_path.startswith(s + "/"))
            for s in scopes
        )
    )


def find_token(session: Session, serial: str) -> Token | None:
    """Return the token with ``serial`` whatever its scope, or None."""
    return session.scalars(select(Token).where(Token.serial == serial)).first()


def get_token(session: Session, actor: Actor, serial: str) -> Token:
    """Return a token the actor may see: their own, or one in their scope.

    :raises NotFound: no such token, or it is outside the actor's scope (the
        two look the same, so the inventory of other domains stays private).
    """
    token = find_token(session, serial)
    if token is None or not (
        token.owner == actor.username
        or may_act_on(actor, token.domain_path, DISTRIBUTING_ROLES)
    ):
        raise NotFound(
            f"No token with serial number {serial} in your scope; check the "
            "serial number."
        )
    return token


def list_tokens(
    session: Session,
    actor: Actor,
    *,
    state: str | None = None,
    model_code: str | None = None,
    owner: str | None = None,
    domain_path: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Token]:
    """Return the tokens in the actor's scope, filtered, ordered by serial."""
    query = select(Token).order_by(Token.serial)
    scope = _scope_filter(actor, DISTRIBUTING_ROLES)
    if scope is not None:
        query = query.where(scope)
    if state:
        query = query.where(Token.state == state)
    if model_code:
        query = query.join(Token.model).where(TokenModel.code == model_code)
    if owner:
        query = query.where(Token.owner == owner)
    if domain_path:
        query = query.where(
            or_(
                Token.domain_path == domain_path,
                Token.domain_path.startswith(domain_path + "/"),
            )
        )

    return list(session.scalars(query.limit(limit).offset(offset)))


def tokens_of(session: Session, username: str) -> list[Token]:
    """Return the tokens assigned to ``username``, newest first."""
    return list(
        session.scalars(
            select(Token)
            .where(Token.owner == username)
            .order_by(Token.created_at.desc(), Token.id.desc())
        )
    )


def token_history(session: Session, serial: str) -> list[TokenEvent]:
    """Return the history of the token ``serial``, oldest first.

    :raises NotFound: no such token.
    """
    token = find_token(session, serial)
    if token is None:
        raise NotFound(f"No token with serial number {serial}.")
    return list(
        session.scalars(
            select(TokenEvent)
            .where(TokenEvent.token_id == token.id)
            .order_by(TokenEvent.id)
        )
    )


# -- import --------------------------------------------------------------------------


@dataclass(frozen=True)
class RowResult:
    """The outcome of one line of an imported file."""

    line: int
    serial: str
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    """What an import did: how many tokens it added and a result per line."""

    imported: int = 0
    rows: list[RowResult] = field(default_factory=list)

    @property
    def errors(self) -> list[RowResult]:
        return [r for r in self.rows if not r.ok]


class ImportRefused(ValidationFailed):
    """A file of tokens had errors and nothing of it was imported."""

    code = "import_refused"

    def __init__(self, report: ImportReport):
        self.report = report
        errors = report.errors
        lines = "\n".join(f"  {row}" for row in errors)
        noun, it = (
            ("line has an error", "it")
            if len(errors) == 1
            else ("lines have errors", "them")
        )
        super().__init__(
            f"Import refused, nothing was imported: {len(errors)} {noun}. Fix "
            f"{it} and import the file again, or skip the bad lines.\n{lines}"
        )


def import_tokens_csv(
    session: Session,
    actor: Actor,
    data: bytes | str,
    *,
    domain_path: str,
    skip_bad_rows: bool = False,
    today: date | None = None,
) -> ImportReport:
    """Add hardware tokens from a CSV file to the inventory of ``domain_path``.

    The file has the header ``serial,model,expiry`` and one token a line;
    expiry is a date YYYY-MM-DD. Either every line is valid and all are
    imported, or nothing is, unless ``skip_bad_rows`` imports the valid lines
    and reports the others.

    :returns: the report, one :class:`RowResult` per data line.
    :raises PermissionDenied: the actor is not a token administrator of
        ``domain_path``.
    :raises NotFound: the domain does not exist.
    :raises ImportRefused: the file or some lines are bad (and bad lines were
        not to be skipped); it carries the report.
    """
    if find_domain(session, domain_path) is None:
        raise NotFound(unknown_domain_message(session, domain_path))
    if not may_act_on(actor, domain_path, MANAGING_ROLES):
        raise PermissionDenied(
            f"{actor.username} may not import tokens into '{domain_path}': that "
            "needs the token administrator role in that security domain."
        )

    report = ImportReport()
    text = _decode(data, report)
    if text is None:
        raise ImportRefused(report)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header) != CSV_HEADER:
        found = ",".join(header) if header else "an empty file"
        report.rows.append(
            RowResult(
                1, "", False, f'the header must be "serial,model,expiry", not "{found}"'
            )
        )
        raise ImportRefused(report)

    models = {m.code: m for m in session.scalars(select(TokenModel))}
    seen: dict[str, int] = {}
    ready: list[tuple[int, str, TokenModel, date]] = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        line = reader.line_num
        serial = values[0].strip() if values else ""
        problem, parsed = _check_row(session, values, models, seen, line, today)
        if problem:
            report.rows.append(RowResult(line, serial, False, problem))
            continue
        seen[serial] = line
        ready.append((line, serial, *parsed))

    if report.errors and not skip_bad_rows:
        for line, serial, _, _ in ready:
            report.rows.append(
                RowResult(line, serial, True, "valid, not imported (file refused)")
            )
        report.rows.sort(key=lambda r: r.line)
        raise ImportRefused(report)

    for line, serial, model, expiry in ready:
        token = Token(
            serial=serial,
            model=model,
            state=TokenState.AVAILABLE,
            domain_path=domain_path,
            expires_on=expiry,
        )
        session.add(token)
        session.add(
            TokenEvent(
                token=token,
                actor=actor.username,
                from_state=None,
                to_state=TokenState.AVAILABLE,
                message=f"Imported into '{domain_path}'",
            )
        )
        report.rows.append(RowResult(line, serial, True, "imported"))
        report.imported += 1
    session.flush()
    report.rows.sort(key=lambda r: r.line)
    # One event for the whole file: each token's own history already has a
    # line for its import.
    tokens = "token" if report.imported == 1 else "tokens"
    skipped = len(report.errors)
    audit.record(
        session,
        actor=actor.username,
        action="tokens_imported",
        subject=f"inventory {domain_path}",
        message=(
            f"Imported {report.imported} {tokens} into '{domain_path}'"
            + (
                f", skipped {skipped} bad line{'s' if skipped != 1 else ''}"
                if skipped
                else ""
            )
        ),
        domain_path=domain_path,
        data={"imported": report.imported, "skipped": skipped},
    )

    return report


def _decode(data: bytes | str, report: ImportReport) -> str | None:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    # Strip the BOM here rather than with "utf-8-sig", whose error offsets
    # would not count it.
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        report.rows.append(
            RowResult(
                line,
                "",
                False,
                f"the file is not UTF-8 text (byte {column} of the line); save it "
                "as CSV UTF-8 and import it again",
            )
        )
        return None


def _check_row(session, values, models, seen, line, today):
    """Return (problem, None) or (None, (model, expiry)) for one data line."""
    if len(values) != len(CSV_HEADER):
        return (
            f"expected 3 values (serial,model,expiry), found {len(values)}",
            None,
        )
    serial, code, expiry_text = (v.strip() for v in values)
    for name, value in zip(CSV_HEADER, (serial, code, expiry_text), strict=True):
        if not value:
            return f"the {name} is missing", None

    if not _SERIAL.fullmatch(serial):
        return (
            f"serial '{serial}' may contain only letters, digits and '-' (at most 64)",
            None,
        )
    if serial in seen:
        return f"serial {serial} appears again (first on line {seen[serial]})", None
    existing = find_token(session, serial)
    if existing is not None:
        return (
            f"serial {serial} is already in the inventory (state {existing.state})",
            None,
        )

    model = models.get(code)
    if model is None or not model.active:
        known = sorted(
            c
            for c, m in models.items()
            if m.active and m.token_class == TokenClass.HARDWARE
        )
        return (
            f"unknown token model '{code}'; known hardware models: "
            f"{', '.join(known) or 'none'}",
            None,
        )
    if model.token_class != TokenClass.HARDWARE:
        return (
            f"token model '{code}' is a software token profile; only hardware "
            "tokens are imported from a file",
            None,
        )

    try:
        expiry = date.fromisoformat(expiry_text)
        if len(expiry_text) != 10:
            raise ValueError(expiry_text)
    except ValueError:
        return f"expiry '{expiry_text}' is not a date in the form YYYY-MM-DD", None
    if expiry < (today or date.today()):
        return f"expiry {expiry_text} is in the past; the token has expired", None

    return None, (model, expiry)


# -- distribution ----------------------------------------------------------------


def serves(token_path: str, request_path: str) -> bool:
    """Return whether an inventory at ``token_path`` may serve a request.

    A token serves requests of its own domain, of its sub-domains (a regional
    stock ships to every office of the region), and of a parent domain (an
    office stock may serve the region's own users).
    """
    return in_scope(token_path, request_path) or in_scope(request_path, token_path)


def available_serials(
    session: Session,
    actor: Actor,
    *,
    model_code: str,
    domain_path: str,
    limit: int | None = None,
) -> list[Token]:
    """Return the tokens a distributor may assign to a request.

    :param model_code: the requested token model.
    :param domain_path: the security domain of the request.
    :param limit: at most this many (default: all).
    :returns: available, unexpired tokens of that model, in the actor's
        scope, whose inventory serves the request's domain, by serial.
    """
    query = (
        select(Token)
        .join(Token.model)
        .where(
            Token.state == TokenState.AVAILABLE,
            TokenModel.code == model_code,
            or_(Token.expires_on.is_(None), Token.expires_on >= date.today()),
        )
        .order_by(Token.serial)
    )
    scope = _scope_filter(actor, DISTRIBUTING_ROLES)
    if scope is not None:
        query = query.where(scope)

    tokens = session.scalars(query).all()
    return [t for t in tokens if serves(t.domain_path, domain_path)][:limit]


class AssignmentRefused(ConflictError):
    """A serial cannot be assigned to a request; ``fact`` says why.

    ``lasting`` is True when no change to the inventory can make this serial
    fit this request (another model, expired, an inventory that does not
    serve the request's domain), as opposed to a state a token administrator
    can change.
    """

    def __init__(
        self, fact: str, advice: str = CHOOSE_ANOTHER, *, lasting: bool = False
    ):
        self.fact = fact
        self.lasting = lasting
        super().__init__(f"{fact}; {advice}")


def check_assignable(
    session: Session,
    actor: Actor,
    serial: str,
    *,
    model_code: str,
    domain_path: str,
) -> Token:
    """Return the token ``serial`` if it may be assigned to this request.

    :raises NotFound: no such token in the actor's scope.
    :raises PermissionDenied: the token is outside the actor's scope.
    :raises ConflictError: the token is not available, of another model,
        expired, or in an inventory that does not serve ``domain_path``.
    """
    token = find_token(session, serial)
    if token is None:
        raise NotFound(
            f"Serial {serial} is not in the token inventory; check the serial "
            "number or import the token first."
        )
    _require(actor, token, DISTRIBUTING_ROLES, "assign")
    if token.state != TokenState.AVAILABLE:
        raise AssignmentRefused(
            f"Serial {serial} is not available (state {token.state})"
        )
    if token.model.code != model_code:
        raise AssignmentRefused(
            f"Serial {serial} is a {token.model.code}, but the request is for a "
            f"{model_code}",
            lasting=True,
        )
    if token.expires_on is not None and token.expires_on < date.today():
        raise AssignmentRefused(
            f"Serial {serial} expired on {token.expires_on:%Y-%m-%d}", lasting=True
        )
    if not serves(token.domain_path, domain_path):
        raise AssignmentRefused(
            f"Serial {serial} belongs to the inventory of '{token.domain_path}', "
            f"which does not serve requests of '{domain_path}'",
            lasting=True,
        )

    return token


def assign_and_ship(
    session: Session,
    *,
    serial: str,
    owner: str,
    request_id: int | None,
    model_code: str,
    shipping_address: str,
    carrier: str,
    tracking_number: str | None,
    actor: Actor,
    domain_path: str | None = None,
) -> Token:
    """Assign an available hardware token to ``owner`` and record its shipping.

    :param domain_path: the request's security domain (default: the owner's).
    :returns: the token, now shipped.
    :raises NotFound, PermissionDenied, ConflictError: see
        :func:`check_assignable`; also NotFound if the owner is unknown.
    :raises ValidationFailed: no shipping address or carrier.
    """
    user = get_user(session, owner)
    missing = {
        name: f"Enter the {label}."
        for name, label, value in (
            ("shipping_address", "shipping address", shipping_address),
            ("carrier", "carrier", carrier),
        )
        if not (value or "").strip()
    }
    if missing:
        raise ValidationFailed(f"Token {serial} was not shipped.", missing)
    token = check_assignable(
        session,
        actor,
        serial,
        model_code=model_code,
        domain_path=domain_path or user.domain.path,
    )

    token.owner = owner
    token.request_id = request_id
    where = f" for request {request_id}" if request_id else ""
    change_state(
        session,
        token,
        TokenState.ASSIGNED,
        actor=actor.username,
        message=f"Assigned to {owner}{where}",
    )
    token.shipping_address = shipping_address.strip()
    token.carrier = carrier
    token.tracking_number = (tracking_number or "").strip() or None
    tracking = (
        f", tracking number {token.tracking_number}" if token.tracking_number else ""
    )
    change_state(
        session,
        token,
        TokenState.SHIPPED,
        actor=actor.username,
        message=f"Shipped by {carrier}{tracking}",
    )

    return token


def enable_hardware_token(session: Session, actor: Actor, serial: str) -> Token:
    """Enable a shipped hardware token once its owner confirms receipt.

    :raises NotFound: no such token of the actor's.
    :raises PermissionDenied: the token belongs to someone else.
    :raises ConflictError: the token is not shipped, or is a software token.
    """
    token = find_token(session, serial)
    if token is None:
        raise NotFound(f"No token with serial number {serial}; check the number.")
    if token.owner != actor.username:
        raise PermissionDenied(
            f"Token {serial} is not assigned to you; only its owner can confirm "
            "that it arrived."
        )
    if token.token_class != TokenClass.HARDWARE:
        raise ConflictError(
            f"Token {serial} is a software token; enable it with a code from "
            "your authenticator app."
        )
    if token.state != TokenState.SHIPPED:
        raise ConflictError(
            f"Token {serial} is {token.state}, not shipped; only a token on its "
            "way to you can be enabled on receipt."
        )

    change_state(
        session, token, TokenState.ACTIVE, actor=actor.username, message="Received"
    )
    return token


def disable_token(
    session: Session, actor: Actor, serial: str, *, reason: str = ""
) -> Token:
    """Disable a token so it no longer gives access.

    :raises NotFound: no such token.
    :raises PermissionDenied: the actor is not a token administrator of its
        inventory.
    :raises ConflictError: the token is disabled already.
    """
    token = _managed_token(session, actor, serial, "disable")
    change_state(
        session,
        token,
        TokenState.DISABLED,
        actor=actor.username,
        message=reason or "Disabled",
    )
    token.temporarily_unavailable = False
    token.emergency_code_hash = None
    token.emergency_expires_at = None
    _record_token_action(session, actor, token, "token_disabled", reason or "Disabled")

    return token


def unassign_token(
    session: Session, actor: Actor, serial: str, *, reason: str = ""
) -> Token:
    """Take a token back from its owner and return it to the available stock.

    Only an assigned (not yet shipped) or disabled token can be unassigned.
    Its delivery details and secrets are cleared.

    :raises NotFound, PermissionDenied, ConflictError: as :func:`disable_token`.
    """
    token = _managed_token(session, actor, serial, "unassign")
    previous_owner = token.owner
    message = reason or f"Unassigned from {previous_owner or 'nobody'}"
    change_state(
        session, token, TokenState.AVAILABLE, actor=actor.username, message=message
    )
    _record_token_action(session, actor, token, "token_unassigned", message)
    token.owner = None
    token.request_id = None
    token.carrier = token.tracking_number = token.shipping_address = None
    token.secret_ciphertext = token.activation_digest = None
    token.activation_expires_at = token.last_used_step = None
    token.temporarily_unavailable = False
    token.emergency_code_hash = token.emergency_expires_at = None

    return token


def mark_lost(
    session: Session, actor: Actor, serial: str, *, reason: str = ""
) -> Token:
    """Mark a token permanently lost; its owner or a token administrator may.

    :raises NotFound, PermissionDenied, ConflictError: as :func:`disable_token`.
    """
    token = find_token(session, serial)
    if token is None or token.owner != actor.username:
        token = _managed_token(session, actor, serial, "mark lost")
    change_state(
        session,
        token,
        TokenState.LOST,
        actor=actor.username,
        message=reason or "Reported lost",
    )
    token.temporarily_unavailable = False
    token.emergency_code_hash = None
    token.emergency_expires_at = None
    # The owner reporting their own token is self-service, not staff work;
    # the action name keeps the two apart in the activity report.
    action = (
        "token_reported_lost" if token.owner == actor.username else "token_marked_lost"
    )
    _record_token_action(session, actor, token, action, reason or "Reported lost")

    return token


def _record_token_action(
    session: Session, actor: Actor, token: Token, action: str, message: str
) -> None:
    """Put a token administrator's deliberate act on the audit trail.

    The token's own history (:class:`TokenEvent`) records every change of
    state, including the many made by service tasks; the audit trail keeps
    only these acts of people, next to the rest of the administration.
    """
    audit.record(
        session,
        actor=actor.username,
        action=action,
        subject=f"token {token.serial}",
        message=f"{message} (now {token.state})",
        domain_path=token.domain_path,
    )


def _managed_token(session: Session, actor: Actor, serial: str, action: str) -> Token:
    token = find_token(session, serial)
    if token is None:
        raise NotFound(f"No token with serial number {serial}; check the number.")
    _require(actor, token, MANAGING_ROLES, action)
    return token


_EXPIRING_STATES = (S.AVAILABLE, S.ASSIGNED, S.SHIPPED, S.ACTIVE)


def due_to_expire(session: Session, today: date | None = None) -> bool:
    """Return whether some token is past its expiry date but not marked so."""
    return (
        session.scalar(
            select(Token.id)
            .where(
                Token.state.in_(_EXPIRING_STATES),
                Token.expires_on < (today or date.today()),
            )
            .limit(1)
        )
        is not None
    )


def expire_due_tokens(session: Session, today: date | None = None) -> int:
    """Mark every token whose expiry date has passed as expired; return how many.

    Disabled and lost tokens keep their state: they give no access anyway,
    and their state says more about what happened to them.
    """
    today = today or date.today()
    due = session.scalars(
        select(Token).where(
            Token.state.in_(_EXPIRING_STATES),
            Token.expires_on < today,
        )
    ).all()
    for token in due:
        change_state(
            session,
            token,
            TokenState.EXPIRED,
            actor="system",
            message=f"Expired on {token.expires_on:%Y-%m-%d}",
        )

    return len(due)
