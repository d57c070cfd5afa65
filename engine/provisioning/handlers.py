"""Service task handlers of the provisioning diagrams, registered by topic.

Each handler reads the request's variables from the task data, does its work
in the instance's transaction and writes its results back (``serial_number``,
``activation_link``, ...). A failure raises :class:`ServiceError` with what
went wrong and what to do; the engine turns it into an incident that an
administrator retries once the cause is fixed.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from .. import services, worker
from ..config import Settings
from ..db import Database
from ..errors import NotFound, ProvisioningError, ServiceError
from ..identity import SYSTEM, SYSTEM_ACTOR, Actor, actor_for
from ..models import User, utcnow
from ..services import ServiceCall
from . import directory, inventory, software
from .inventory_models import OnDemandService, TokenState

logger = logging.getLogger(__name__)

RETRY = "then retry the incident"


def _actor(call: ServiceCall) -> Actor:
    """Return who triggered the step, or the system actor if not a user."""
    if call.actor == SYSTEM:
        return SYSTEM_ACTOR
    try:
        return actor_for(call.session, call.actor)
    except NotFound:
        return SYSTEM_ACTOR


def _required(call: ServiceCall, *names: str) -> list[Any]:
    values = [call.data.get(name) for name in names]
    missing = [n for n, v in zip(names, values, strict=True) if v in (None, "")]
    if missing:
        raise ServiceError(
            f"Step '{call.element_id}' of request {call.instance.id} needs the "
            f"variable(s) {', '.join(missing)}, which are empty; the diagram "
            "or the request form must set them."
        )
    return values


def _request_id(call: ServiceCall) -> int | None:
    value = call.data.get("request_id")
    return int(value) if value not in (None, "") else None


@services.register("assign_and_ship_token")
def assign_and_ship_token(call: ServiceCall) -> None:
    """Assign the serial the distributor chose and record its shipping."""
    serial, owner, model_code = _required(
        call, "serial_number", "requester", "token_model"
    )
    try:
        token = inventory.assign_and_ship(
            call.session,
            serial=str(serial).strip(),
            owner=owner,
            request_id=_request_id(call),
            model_code=model_code,
            shipping_address=call.data.get("shipping_address") or "",
            carrier=call.data.get("carrier") or "",
            tracking_number=call.data.get("tracking_number"),
            actor=_actor(call),
            domain_path=call.instance.domain_path or None,
        )
    except ProvisioningError as err:
        raise ServiceError(_with_advice(err, serial, call)) from err

    call.data["token_state"] = token.state
    call.data["expires_on"] = token.expires_on.isoformat() if token.expires_on else ""


def _with_advice(err: ProvisioningError, serial: str, call: ServiceCall) -> str:
    if isinstance(err, inventory.AssignmentRefused) and err.lasting:
        # The serial is part of the completed distribution step: retrying
        # runs the same assignment again, and no diagram step takes it back.
        return (
            f"{err.fact}. Retrying cannot help, as the serial was recorded with "
            "the distribution step: cancel the request (its requester or an "
            "administrator of security domain "
            f"'{call.instance.domain_path}' can) and submit a new one."
        )
    if isinstance(err, inventory.AssignmentRefused):
        return (
            f"{err.fact}; make serial {serial} available in the token inventory "
            f"and retry the incident, or cancel the request."
        )
    return f"{str(err).rstrip('.')}; fix this and retry the incident."


@services.register("issue_software_token")
def issue_software_token(call: ServiceCall) -> None:
    """Create the software token and put its activation link in the data."""
    owner, model_code = _required(call, "requester", "token_model")
    try:
        token, link = software.issue_software_token(
            call.session,
            owner=owner,
            model_code=model_code,
            request_id=_request_id(call),
            settings=call.settings,
            actor=call.actor,
        )
    except ProvisioningError as err:
        raise ServiceError(
            f"{str(err).rstrip('.')}; correct the token model or the user, {RETRY}."
        ) from err

    call.data["serial_number"] = token.serial
    call.data["activation_link"] = link
    call.data["token_state"] = token.state


@services.register("disable_old_token")
def disable_old_token(call: ServiceCall) -> None:
    """Disable the token a user reported lost or broken."""
    (serial, requester) = _required(call, "old_serial", "requester")
    token = inventory.find_token(call.session, serial)
    if token is None:
        raise ServiceError(
            f"Token {serial} is not in the token inventory, so it cannot be "
            f"disabled; check the serial with the requester, {RETRY}."
        )
    if token.owner != requester:
        raise ServiceError(
            f"Token {serial} is not assigned to {requester} (owner: "
            f"{token.owner or 'nobody'}); cancel the request if the serial is "
            f"wrong, or reassign the token, {RETRY}."
        )

    if token.state not in (TokenState.DISABLED, TokenState.LOST):
        inventory.change_state(
            call.session,
            token,
            TokenState.DISABLED,
            actor=call.actor,
            message=f"Reported lost or broken in request {_request_id(call) or '?'}",
        )
    token.temporarily_unavailable = False
    call.data["old_token_state"] = token.state


@services.register("enable_ondemand_tokencode")
def enable_ondemand_tokencode(call: ServiceCall) -> None:
    """Subscribe the requester to tokencodes by SMS or e-mail."""
    (requester,) = _required(call, "requester")
    user = call.session.scalars(select(User).where(User.username == requester)).first()
    if user is None:
        raise ServiceError(
            f"User '{requester}' is not in the directory; create the user, {RETRY}."
        )
    delivery = call.data.get("delivery") or "email"
    if delivery not in ("sms", "email"):
        raise ServiceError(
            f"On-demand delivery '{delivery}' is unknown; it must be sms or email."
        )
    destination = call.data.get("destination") or (
        user.email if delivery == "email" else ""
    )
    if not destination:
        raise ServiceError(
            f"No phone number to send tokencodes to {requester} by SMS; record "
            f"one in the request's 'destination', {RETRY}."
        )

    service = call.session.scalars(
        select(OnDemandService).where(OnDemandService.username == requester)
    ).first()
    if service is None:
        service = OnDemandService(username=requester)
        call.session.add(service)
    service.delivery = delivery
    service.destination = destination
    service.enabled_at = utcnow()
    call.session.flush()
    call.data["ondemand_delivery"] = delivery


@services.register("add_group_membership")
def add_group_membership(call: ServiceCall) -> None:
    """Add the requester to the group the request names."""
    group_name, requester = _required(call, "group_name", "requester")
    try:
        added = directory.add_member(call.session, group_name, requester)
    except ProvisioningError as err:
        raise ServiceError(f"{str(err).rstrip('.')}; {RETRY}.") from err

    call.data["membership_added"] = added


@services.register("create_account")
def create_account(call: ServiceCall) -> None:
    """Create the directory account a self-service request asked for.

    Reads the account fields from ``new_account`` (a dict) or from the top
    level of the data: username, display_name, email; the account's domain
    is the request's security domain.
    """
    fields = call.data.get("new_account") or call.data
    username = (fields.get("username") or "").strip()
    email = (fields.get("email") or "").strip()
    domain_path = (
        fields.get("domain_path")
        or call.data.get("security_domain")
        or call.instance.domain_path
    )
    existing = directory.find_user(call.session, username) if username else None
    if existing is not None and existing.email.lower() == email.lower():
        # A retry after a later failure, or a second request for the same person.
        call.data["account_username"] = existing.username
        return

    try:
        user = directory.create_user(
            call.session,
            username=username,
            display_name=fields.get("display_name") or "",
            email=email,
            domain_path=domain_path,
            actor=SYSTEM,
        )
    except ProvisioningError as err:
        raise ServiceError(
            f"The account was not created: {str(err).rstrip('.')}. Correct the "
            f"directory (for example free the username), {RETRY}."
        ) from err

    call.data["account_username"] = user.username


@services.register("send_reminder")
def send_reminder(call: ServiceCall) -> None:
    """Count the reminder; the notification listener sends the e-mail."""
    call.data["reminders_sent"] = int(call.data.get("reminders_sent") or 0) + 1


@services.register("escalate_request")
def escalate_request(call: ServiceCall) -> None:
    """Mark the request escalated; the notification listener tells people."""
    call.data["escalated"] = True
    call.data["escalated_at"] = utcnow().isoformat()


@services.register("expire_request")
def expire_request(call: ServiceCall) -> None:
    """Record why the request ended without a decision."""
    call.data["outcome"] = "expired: no decision within the allowed time"
    logger.info(
        "Request of instance %s expired without a decision",
        call.instance.id,
        extra={"instance_id": call.instance.id},
    )


def expire_tokens(db: Database, settings: Settings) -> int:
    """Worker job: mark tokens past their expiry date as expired."""
    # Look first in a read transaction: on SQLite a write transaction takes
    # the database's write lock, which the worker should not do on every pass.
    with db.read() as session:
        if not inventory.due_to_expire(session):
            return 0
    with db.write() as session:
        return inventory.expire_due_tokens(session)


worker.register_job("expire_tokens", expire_tokens)
