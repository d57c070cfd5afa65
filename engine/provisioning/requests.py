"""Provisioning requests: submit, follow, decide, distribute and cancel them.

A request is what a user asks for; the process instance of its request type
(see ``bpmn/README.md``) decides how many approval steps and whether a
distribution step it takes. This module is the product's face on the engine:

* :func:`submit_request` checks the form of each request type and the rules
  users expect (an expiring token is replaced only shortly before it expires;
  no second open request for the same thing), then starts the process with
  the start variables the diagrams read, in the caller's transaction. The
  process of a request type starts no other way: a start guard
  (:func:`engine.instances.guard_start`) refuses ``provisioning start`` and
  the Camunda REST API, which would skip the form and the approval policy.
* :func:`decide` and :func:`distribute` work the approval and distribution
  tasks; separation of duties and scope are the engine's
  (:func:`engine.instances.check_may_work`), so they hold for the inbox, this
  module and a direct call of :func:`engine.instances.complete_task` alike.
  So does the serial number check of a hardware distribution, registered
  with :func:`engine.instances.check_completion`.
* An :mod:`engine.events` listener keeps each request's status, current step
  and comment in step with its instance in the same transaction. A request is
  ``completed`` only when its process reached the end event
  ``request_completed``; a failed service task leaves it ``pending`` with a
  visible incident until someone retries it.
* :func:`get_request` shows a request to its requester or to staff whose
  scope covers its security domain, with a readable timeline. Internal notes
  of approvers are shown to staff only, never to the requester.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .. import events, instances, validation
from ..config import Settings
from ..deployments import load_spec
from ..errors import (
    ConflictError,
    InstanceNotActive,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from ..identity import (
    ADMINISTRATOR,
    ROLES,
    TOKEN_ADMINISTRATOR,
    TOKEN_DISTRIBUTOR,
    Actor,
    actor_from_user,
    in_scope,
)
from ..instances import InstanceView
from ..models import (
    HistoryEntry,
    HumanTask,
    Incident,
    IncidentStatus,
    InstanceStatus,
    ProcessInstance,
    RoleGrant,
    SecurityDomain,
    TaskStatus,
    User,
    utcnow,
)
from . import inventory
from .inventory_models import (
    DirectoryGroup,
    GroupMember,
    OnDemandService,
    Token,
    TokenClass,
    TokenModel,
    TokenState,
)
from .request_models import NO_TOKEN, ProvisioningRequest, RequestStatus

logger = logging.getLogger(__name__)

JUSTIFICATION_MIN = 10
MAX_LIST_LIMIT = 500
MAX_LIST_OFFSET = 1_000_000_000
APPROVE_STEP = "approve_request"
HARDWARE_STEP = "distribute_token"
SOFTWARE_STEP = "distribute_software_token"
DECISIONS = ("approve", "reject", "cancel", "defer")

#: process variables that only staff may read
STAFF_ONLY_VARIABLES = ("note",)
#: process variables that only the requester and distribution staff may read
DELIVERY_SECRETS = ("activation_link",)


# -- request types ----------------------------------------------------------


@dataclass(frozen=True)
class RequestField:
    """One field of a request form."""

    id: str
    label: str
    required: bool = False
    help: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    max_length: int = 200


@dataclass(frozen=True)
class RequestType:
    """A kind of request: its process key, a label and the form it needs."""

    key: str
    label: str
    fields: tuple[RequestField, ...]
    #: the request concerns a token the requester holds (``old_serial``)
    about_token: bool = False

    @property
    def field_ids(self) -> list[str]:
        return [f.id for f in self.fields]


_JUSTIFICATION = RequestField(
    "justification",
    "Justification",
    required=True,
    help=f"Why you need it, at least {JUSTIFICATION_MIN} characters.",
    max_length=2000,
)
_OPTIONAL_JUSTIFICATION = replace(_JUSTIFICATION, required=False)
_SHIPPING = RequestField(
    "shipping_address",
    "Shipping address",
    help="Where to send a hardware token; required for hardware tokens.",
    max_length=500,
)
_OLD_SERIAL = RequestField(
    "old_serial", "Token to replace", required=True, help="Its serial number."
)
_REPLACEMENT_MODEL = RequestField(
    "token_model",
    "Token model",
    help="Leave empty for the same model as the token it replaces.",
    max_length=50,
)

REQUEST_TYPES: dict[str, RequestType] = {
    t.key: t
    for t in (
        RequestType(
            "new_token",
            "New or additional token",
            (
                RequestField(
                    "token_class",
                    "Token type",
                    required=True,
                    choices=(
                        (TokenClass.HARDWARE, "Hardware token"),
                        (TokenClass.SOFTWARE, "Software token"),
                    ),
                ),
                RequestField(
                    "token_model", "Token model", required=True, max_length=50
                ),
                _SHIPPING,
                _JUSTIFICATION,
            ),
        ),
        RequestType(
            "replace_expiring_token",
            "Replacement of an expiring token",
            (_OLD_SERIAL, _REPLACEMENT_MODEL, _SHIPPING, _OPTIONAL_JUSTIFICATION),
            about_token=True,
        ),
        RequestType(
            "replace_lost_token",
            "Replacement of a lost or broken token",
            (
                _OLD_SERIAL,
                _REPLACEMENT_MODEL,
                _SHIPPING,
                replace(_JUSTIFICATION, help="What happened to the token."),
            ),
            about_token=True,
        ),
        RequestType(
            "ondemand_tokencode",
            "On-demand tokencode service",
            (
                RequestField(
                    "delivery",
                    "Deliver tokencodes by",
                    required=True,
                    choices=(("sms", "SMS"), ("email", "E-mail")),
                ),
                RequestField(
                    "destination",
                    "Phone number or e-mail address",
                    help="A phone number for SMS; for e-mail, empty means yours.",
                    max_length=320,
                ),
                _OPTIONAL_JUSTIFICATION,
            ),
        ),
        RequestType(
            "group_membership",
            "Membership of a user group",
            (RequestField("group_name", "Group", required=True), _JUSTIFICATION),
        ),
        RequestType(
            "new_account",
            "Self-service account for a new user",
            (
                RequestField("username", "User name", required=True, max_length=64),
                RequestField("display_name", "Full name", required=True),
                RequestField("email", "E-mail address", required=True, max_length=254),
                RequestField("domain_path", "Security domain", required=True),
                _JUSTIFICATION,
            ),
        ),
    )
}

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()-]{5,24}$")


# -- submitting -------------------------------------------------------------


@dataclass
class _Checked:
    """A request form after validation: what the request row and process need."""

    token_class: str = NO_TOKEN
    token_model: str = ""
    old_serial: str = ""
    group_name: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def submit_request(
    session: Session,
    *,
    actor: Actor,
    request_type: str,
    form: dict[str, Any],
    settings: Settings,
    on_behalf_of: str | None = None,
    require_shipping_address: bool = True,
) -> ProvisioningRequest:
    """Check a request form and start the request's process.

    :param actor: who submits; the requester unless ``on_behalf_of`` is given.
    :param request_type: a key of :data:`REQUEST_TYPES`.
    :param form: the fields of that type (see :attr:`RequestType.fields`).
    :param on_behalf_of: submit for this user instead; ``actor`` must be an
        administrator of the user's security domain. The user is the
        requester (and so may not approve it); ``actor`` is recorded.
    :param require_shipping_address: False lets a hardware token request go
        without an address, which the distributor then records (bulk requests).
    :returns: the new request, flushed, with its process started.
    :raises ValidationFailed: a field is missing or wrong; one message per field.
    :raises ConflictError: the same request is still pending.
    :raises PermissionDenied: ``on_behalf_of`` is outside the actor's scope.
    :raises NotFound: the requester is not an active user.
    """
    rtype = _request_type(request_type)
    requester = _lock_user(session, on_behalf_of or actor.username)
    if on_behalf_of and not actor.has_role(ADMINISTRATOR, requester.domain.path):
        raise PermissionDenied(
            f"You are not an administrator of security domain "
            f"'{requester.domain.path}', so you may not submit requests for "
            f"{requester.username}."
        )

    checked = _check_form(
        session,
        rtype,
        form,
        requester=requester,
        settings=settings,
        require_shipping_address=require_shipping_address,
    )
    if on_behalf_of:
        checked.details["submitted_by"] = actor.username
    _refuse_duplicate(session, rtype, requester.username, checked)

    return _start(
        session,
        rtype,
        checked,
        starter=actor_from_user(requester),
        email=requester.email,
        settings=settings,
    )


def submit_account_request(
    session: Session, *, form: dict[str, Any], settings: Settings
) -> ProvisioningRequest:
    """Ask for an account for someone who is not in the directory yet.

    :param form: username, display_name, email, domain_path, justification.
    :returns: the new ``new_account`` request; its requester and the process
        initiator are recorded as ``self-service:<email>``.
    :raises ValidationFailed: a field is missing or wrong, the user name is
        taken or the security domain does not exist.
    :raises ConflictError: an account request for the same name or e-mail
        address is still pending.
    """
    rtype = REQUEST_TYPES["new_account"]
    checked = _check_form(session, rtype, form, requester=None, settings=settings)
    email = checked.details["email"]
    requester = f"self-service:{email}"
    _refuse_duplicate(session, rtype, requester, checked)
    starter = Actor(requester, checked.details["domain_path"])

    return _start(
        session, rtype, checked, starter=starter, email=email, settings=settings
    )


def _request_type(key: str) -> RequestType:
    rtype = REQUEST_TYPES.get(key)
    if rtype is None:
        raise ValidationFailed(
            "Unknown request type.",
            {
                "request_type": f"'{key}' is not a request type; choose one of: "
                f"{', '.join(REQUEST_TYPES)}."
            },
        )
    return rtype


def _lock_user(session: Session, username: str) -> User:
    # The row lock serializes two submissions of one user on PostgreSQL, so
    # that the duplicate check below cannot pass twice (SQLite's write lock
    # already does this).
    user = session.scalars(
        select(User).where(User.username == username).with_for_update(of=User)
    ).first()
    if user is None or not user.is_active:
        raise NotFound(
            f"No active user named '{username}'; check the spelling or create "
            "the user first."
        )
    return user


def _check_form(
    session: Session,
    rtype: RequestType,
    form: dict[str, Any],
    *,
    requester: User | None,
    settings: Settings,
    require_shipping_address: bool = True,
) -> _Checked:
    errors: dict[str, str] = {}
    for key in form:
        if key not in rtype.field_ids:
            errors[key] = (
                f"'{key}' is not a field of a request for '{rtype.label}'; the "
                f"fields are: {', '.join(rtype.field_ids)}."
            )
    values = {f.id: str(form.get(f.id) or "").strip() for f in rtype.fields}
    for spec in rtype.fields:
        value = values[spec.id]
        options = [c for c, _ in spec.choices]
        if not value:
            if spec.required:
                errors[spec.id] = f"{spec.label} is required."
        elif len(value) > spec.max_length:
            errors[spec.id] = (
                f"{spec.label} must be at most {spec.max_length} characters."
            )
        elif options and value not in options:
            errors[spec.id] = f"{spec.label} must be one of: {', '.join(options)}."
    justification = values.get("justification", "")
    if "justification" not in errors and 0 < len(justification) < JUSTIFICATION_MIN:
        errors["justification"] = (
            f"Justification must be at least {JUSTIFICATION_MIN} characters; say "
            "why you need it."
        )

    checked = _Checked(details={"justification": justification})
    if rtype.key == "new_token":
        _check_new_token(session, values, errors, checked)
    elif rtype.about_token:
        _check_replacement(session, rtype, values, errors, checked, requester, settings)
    elif rtype.key == "ondemand_tokencode":
        _check_ondemand(session, values, errors, checked, requester)
    elif rtype.key == "group_membership":
        _check_group(session, values, errors, checked, requester)
    elif rtype.key == "new_account":
        _check_account(session, values, errors, checked)

    if checked.token_class == TokenClass.HARDWARE:
        address = values.get("shipping_address") or checked.details.get(
            "shipping_address", ""
        )
        if not address and require_shipping_address:
            errors.setdefault(
                "shipping_address",
                "Shipping address is required for a hardware token; give the "
                "address the token should be sent to.",
            )
        checked.details["shipping_address"] = address
    if errors:
        raise ValidationFailed(
            "The request has errors; correct them and submit again.", errors
        )
    return checked


def _check_new_token(session, values, errors, checked: _Checked) -> None:
    token_class = values["token_class"]
    if "token_class" in errors:
        return
    checked.token_class = token_class
    if "token_model" in errors and values["token_model"]:
        return
    error = token_model_error(session, values["token_model"], token_class)
    if error:
        errors["token_model"] = error
    checked.token_model = values["token_model"]


def token_model_error(session: Session, code: str, token_class: str) -> str | None:
    """Return why ``code`` is no model for a ``token_class`` token, or None."""
    offered = list(
        session.scalars(
            select(TokenModel.code)
            .where(TokenModel.token_class == token_class, TokenModel.active)
            .order_by(TokenModel.code)
        )
    )
    choose = (
        f"choose one of: {', '.join(offered)}."
        if offered
        else f"no {token_class} token model is offered yet; ask a token "
        "administrator to add one."
    )
    if not code:
        return f"Token model is required; {choose}"
    model = session.scalars(select(TokenModel).where(TokenModel.code == code)).first()
    if model is None or not model.active:
        return f"Token model '{code}' does not exist; {choose}"
    if model.token_class != token_class:
        return (
            f"Token model '{code}' is a {model.token_class} token, but this "
            f"request is for a {token_class} token; {choose}"
        )
    return None


def _check_replacement(
    session, rtype, values, errors, checked: _Checked, requester, settings
) -> None:
    serial = values["old_serial"]
    if "old_serial" in errors:
        return
    token = session.scalars(select(Token).where(Token.serial == serial)).first()
    if token is None or token.owner != requester.username:
        yours = list(
            session.scalars(
                select(Token.serial)
                .where(Token.owner == requester.username)
                .order_by(Token.serial)
            )
        )
        errors["old_serial"] = (
            f"Token '{serial}' is not one of your tokens; choose one of: "
            f"{', '.join(yours)}."
            if yours
            else f"Token '{serial}' is not one of your tokens, and you hold none; "
            "ask for a new token instead."
        )
        return

    if rtype.key == "replace_expiring_token":
        error = _expiry_error(token, settings)
        if error:
            errors["old_serial"] = error
            return
    checked.old_serial = token.serial
    checked.token_class = token.model.token_class
    checked.token_model = values["token_model"] or token.model.code
    if values["token_model"]:
        error = token_model_error(session, values["token_model"], checked.token_class)
        if error:
            errors["token_model"] = error
    if token.model.token_class == TokenClass.HARDWARE and token.shipping_address:
        checked.details["shipping_address"] = token.shipping_address


def _expiry_error(token: Token, settings: Settings) -> str | None:
    if token.state in (TokenState.LOST, TokenState.DISABLED):
        return (
            f"Token '{token.serial}' is {token.state}; ask for a replacement of a "
            "lost or broken token instead."
        )
    if token.expires_on is None:
        return (
            f"Token '{token.serial}' has no expiry date, so it cannot be replaced "
            "as expiring; ask for a replacement of a lost or broken token if it "
            "no longer works."
        )
    days = settings.expiry_replacement_days
    allowed_from = token.expires_on - timedelta(days=days)
    if utcnow().date() < allowed_from:
        return (
            f"Token '{token.serial}' expires on {token.expires_on.isoformat()}; a "
            f"replacement can be requested from {allowed_from.isoformat()} "
            f"({days} days before expiry)."
        )
    return None


def _check_ondemand(session, values, errors, checked: _Checked, requester) -> None:
    delivery, destination = values["delivery"], values["destination"]
    if "delivery" in errors or "destination" in errors:
        return
    if delivery == "sms" and not destination:
        errors["destination"] = (
            "Phone number is required for SMS delivery, such as +33 1 23 45 67 89."
        )
    elif delivery == "sms" and not _PHONE.match(destination):
        errors["destination"] = (
            f"'{destination}' is not a phone number; write digits, optionally "
            "starting with +, such as +33 1 23 45 67 89."
        )
    elif delivery == "email":
        destination = destination or requester.email
        if not _EMAIL.match(destination):
            errors["destination"] = (
                f"'{destination}' is not an e-mail address; write one such as "
                "name@example.org."
            )
    current = session.scalars(
        select(OnDemandService).where(OnDemandService.username == requester.username)
    ).first()
    if current is not None:
        errors["delivery"] = (
            f"You already receive on-demand tokencodes by {current.delivery} to "
            f"{current.destination}; there is nothing to request."
        )
    checked.details.update(delivery=delivery, destination=destination)


def _check_group(session, values, errors, checked: _Checked, requester) -> None:
    name = values["group_name"]
    if "group_name" in errors:
        return
    group = session.scalars(
        select(DirectoryGroup).where(DirectoryGroup.name == name)
    ).first()
    if group is None:
        names = list(
            session.scalars(select(DirectoryGroup.name).order_by(DirectoryGroup.name))
        )
        errors["group_name"] = (
            f"Group '{name}' does not exist; choose one of: {', '.join(names)}."
            if names
            else f"Group '{name}' does not exist, and no group is defined yet."
        )
        return
    member = session.scalar(
        select(GroupMember.id).where(
            GroupMember.group_id == group.id,
            GroupMember.username == requester.username,
        )
    )
    if member is not None:
        errors["group_name"] = f"You are already a member of group '{name}'."
    checked.group_name = name


def _check_account(session, values, errors, checked: _Checked) -> None:
    username, email, path = values["username"], values["email"], values["domain_path"]
    if "username" not in errors:
        if not _USERNAME.match(username):
            errors["username"] = (
                "User name must be 2 to 64 characters: lower-case letters, digits, "
                "dots, hyphens and underscores, starting with a letter or digit."
            )
        elif session.scalar(select(User.id).where(User.username == username)):
            errors["username"] = f"User name '{username}' is taken; choose another."
    if "email" not in errors and not _EMAIL.match(email):
        errors["email"] = (
            f"'{email}' is not an e-mail address; write one such as name@example.org."
        )
    if "domain_path" not in errors:
        exists = session.scalar(
            select(SecurityDomain.id).where(SecurityDomain.path == path)
        )
        if exists is None:
            errors["domain_path"] = (
                f"Security domain '{path}' does not exist; check the path, such as "
                "acme/emea/paris."
            )
    checked.details.update(
        username=username,
        display_name=values["display_name"],
        email=email,
        domain_path=path,
    )


def _refuse_duplicate(
    session: Session, rtype: RequestType, requester: str, checked: _Checked
) -> None:
    query = select(ProvisioningRequest).where(
        ProvisioningRequest.request_type == rtype.key,
        ProvisioningRequest.status == RequestStatus.PENDING,
    )
    if rtype.about_token:
        query = query.where(ProvisioningRequest.old_serial == checked.old_serial)
        what = f"for token '{checked.old_serial}'"
    elif rtype.key == "new_account":
        what = f"for the account '{checked.details['username']}'"
    else:
        query = query.where(ProvisioningRequest.requester == requester)
        what = f"of {requester}"
        if rtype.key == "group_membership":
            query = query.where(ProvisioningRequest.group_name == checked.group_name)
        elif rtype.key == "new_token":
            # A user may well need a hardware and a software token at once.
            query = query.where(ProvisioningRequest.token_class == checked.token_class)
            what = f"for a {checked.token_class} token of {requester}"
    for pending in session.scalars(query.order_by(ProvisioningRequest.id)):
        if rtype.key == "new_account" and not (
            pending.details.get("username") == checked.details["username"]
            or pending.details.get("email") == checked.details["email"]
        ):
            continue
        raise ConflictError(
            f"Request {pending.id} ({rtype.label}) {what} is still pending; follow "
            "that request, or cancel it, before asking again."
        )


_STARTING = "provisioning.starting_request"


def _start(
    session: Session,
    rtype: RequestType,
    checked: _Checked,
    *,
    starter: Actor,
    email: str,
    settings: Settings,
) -> ProvisioningRequest:
    """Write the request row and start its process in the same transaction."""
    request = ProvisioningRequest(
        request_type=rtype.key,
        requester=starter.username,
        domain_path=starter.domain_path,
        token_class=checked.token_class,
        token_model=checked.token_model,
        old_serial=checked.old_serial,
        group_name=checked.group_name,
        details=checked.details,
        status=RequestStatus.PENDING,
        current_step="",
        comment_to_user="",
        outcome="",
    )
    session.add(request)
    session.flush()

    details = checked.details
    variables = {
        "request_id": request.id,
        "request_type": rtype.key,
        "token_class": checked.token_class,
        "security_domain": starter.domain_path,
        "requester": starter.username,
        "requester_email": email,
        "token_model": checked.token_model,
        "old_serial": checked.old_serial,
        "shipping_address": details.get("shipping_address", ""),
        "justification": details.get("justification", ""),
        "group_name": checked.group_name,
        "delivery": details.get("delivery", ""),
        "destination": details.get("destination", ""),
        "new_account": {
            k: details[k]
            for k in ("username", "display_name", "email", "domain_path")
            if k in details
        },
        "reminder_after": settings.reminder_after,
        "escalate_after": settings.escalate_after,
        "auto_cancel_after": settings.auto_cancel_after,
    }
    # The listener ties the instance to this row as soon as the instance
    # exists, so that the steps it runs right away already update the request.
    session.info[_STARTING] = request
    try:
        instance = instances.start_instance(
            session,
            rtype.key,
            actor=starter,
            business_key=f"request-{request.id}",
            variables=variables,
            domain_path=starter.domain_path,
            settings=settings,
        )
    finally:
        session.info.pop(_STARTING, None)
    request.instance_id = instance.id
    sync_request(session, request, instance)
    logger.info(
        "Submitted request %s (%s) for %s",
        request.id,
        rtype.key,
        request.requester,
        extra={"request_id": request.id, "instance_id": instance.id},
    )
    return request


def _guard_request_start(
    session: Session, key: str, actor: Actor, variables: dict[str, Any]
) -> None:
    """Refuse to start a request's process except from :func:`_start`.

    Started any other way (``provisioning start``, the Camunda REST API), the
    process would run on whatever variables the caller gave, with no request
    row: a request type with no approval step, a token with no approval. So a
    start must come with the request being submitted: the row named by
    ``request_id``, of this type and requester, not started yet.
    """
    request_id = variables.get("request_id")
    request = (
        session.get(ProvisioningRequest, request_id)
        if isinstance(request_id, int) and not isinstance(request_id, bool)
        else None
    )
    if (
        request is not None
        and request is session.info.get(_STARTING)
        and request.instance_id is None
        and request.request_type == key
        and request.requester == actor.username
    ):
        return
    raise PermissionDenied(
        f"Process '{key}' runs '{REQUEST_TYPES[key].label}' requests and starts "
        "only when such a request is submitted, so that its form is checked and "
        "its approval steps apply; nothing was started. Start it with "
        f"`provisioning requests submit {key} --user {actor.username} --field "
        "NAME=VALUE ...` or the console's New request page."
    )


def _check_hardware_distribution(
    session: Session,
    actor: Actor,
    task: HumanTask,
    instance: ProcessInstance,
    values: dict[str, Any],
) -> None:
    """Refuse a serial the distributor may not assign to this request.

    The engine runs this on every completion of the step, :func:`distribute`
    and the generic task form alike; a wrong serial would otherwise fail later
    in the service task, with no retry that could help.
    """
    request = session.scalars(
        select(ProvisioningRequest).where(
            ProvisioningRequest.instance_id == instance.id
        )
    ).first()
    if request is None:
        return
    serial = str(values.get("serial_number") or "").strip()
    error = _serial_error(session, actor, request, serial)
    if error:
        raise ValidationFailed(
            "The distribution has errors; correct them and submit again.",
            {"serial_number": error},
        )


# -- keeping the request in step with its instance --------------------------

_END_STATUS = {
    "request_completed": RequestStatus.COMPLETED,
    "request_rejected": RequestStatus.REJECTED,
    "request_cancelled": RequestStatus.CANCELLED,
    "request_expired": RequestStatus.EXPIRED,
}
_TRACKED = {
    "task_created",
    "task_completed",
    "task_saved",
    "task_cancelled",
    "instance_completed",
    "instance_cancelled",
    "incident_opened",
    "incident_retried",
}


@events.subscribe
def on_history(
    session: Session,
    instance: ProcessInstance,
    entry: HistoryEntry,
    task: HumanTask | None,
) -> None:
    """Keep the request of ``instance`` in step with what just happened to it.

    Raises :class:`ValidationFailed` (which rolls the step back) when an
    approval step changes the token model to another token class, even
    through :func:`engine.instances.complete_task` directly.
    """
    if instance.process_key not in REQUEST_TYPES:
        return
    if entry.action == "instance_started":
        starting = session.info.get(_STARTING)
        if starting is not None and starting.instance_id is None:
            starting.instance_id = instance.id
        return
    if entry.action not in _TRACKED:
        return
    request = session.scalars(
        select(ProvisioningRequest).where(
            ProvisioningRequest.instance_id == instance.id
        )
    ).first()
    if request is None:
        return

    if entry.action in ("task_completed", "task_saved") and task is not None:
        _take_task_data(session, request, entry, task)
    sync_request(session, request, instance)


def _take_task_data(session, request, entry: HistoryEntry, task: HumanTask) -> None:
    data = entry.data or {}
    if task.task_spec == APPROVE_STEP and "token_model" in data:
        code = data["token_model"] or ""
        if request.token_class == NO_TOKEN:
            if code:
                raise ValidationFailed(
                    "The decision has errors; correct them and submit again.",
                    {
                        "token_model": f"Request {request.id} is not for a token; "
                        "leave the token model empty."
                    },
                )
        elif code != request.token_model:
            error = (
                token_model_error(session, code, request.token_class)
                if code
                else f"Token model may not be emptied; leave the field out to keep "
                f"{request.token_model}."
            )
            if error:
                raise ValidationFailed(
                    "The decision has errors; correct them and submit again.",
                    {"token_model": error},
                )
            if entry.action == "task_completed":
                logger.info(
                    "Request %s: token model changed from %s to %s by %s",
                    request.id,
                    request.token_model,
                    code,
                    entry.actor,
                    extra={"request_id": request.id},
                )
                request.token_model = code
    if entry.action != "task_completed":
        return
    comment = (data.get("comment") or "").strip()
    if comment:
        request.comment_to_user = comment
    if task.task_spec == HARDWARE_STEP:
        delivery = {
            k: data.get(k) or ""
            for k in ("serial_number", "shipping_address", "carrier", "tracking_number")
        }
        request.details = {**request.details, "delivery": delivery}
    elif task.task_spec == SOFTWARE_STEP:
        request.details = {
            **request.details,
            "delivery": {"delivery_method": data.get("delivery_method") or ""},
        }


def sync_request(
    session: Session, request: ProvisioningRequest, instance: ProcessInstance
) -> None:
    """Set the request's status, current step and outcome from its instance."""
    now = utcnow()
    request.updated_at = now
    if instance.status == InstanceStatus.COMPLETED:
        request.status = _END_STATUS.get(instance.end_event or "", RequestStatus.FAILED)
        request.current_step = ""
        request.ended_at = instance.ended_at or now
        request.outcome = _outcome(session, request, instance)
    elif instance.status == InstanceStatus.CANCELLED:
        request.status = RequestStatus.CANCELLED
        request.current_step = ""
        request.ended_at = instance.ended_at or now
        request.outcome = (
            f"Cancelled by {instance.cancelled_by}: {instance.cancel_reason}"
        )
    elif instance.status == InstanceStatus.INCIDENT:
        request.status = RequestStatus.PENDING
        incident = session.scalars(
            select(Incident)
            .where(
                Incident.instance_id == instance.id,
                Incident.status == IncidentStatus.OPEN,
            )
            .order_by(Incident.id.desc())
        ).first()
        step = element_name(session, instance, incident.element_id if incident else "")
        request.current_step = f"{step} (failed)"
        message = incident.message.rstrip(".") if incident else "unknown error"
        request.outcome = (
            f"The step '{step}' failed: {message}. The request waits until an "
            "administrator retries the step or the request is cancelled."
        )
    else:
        request.status = RequestStatus.PENDING
        names = list(
            dict.fromkeys(
                session.scalars(
                    select(HumanTask.name)
                    .where(
                        HumanTask.instance_id == instance.id,
                        HumanTask.status == TaskStatus.OPEN,
                    )
                    .order_by(HumanTask.created_at, HumanTask.id)
                )
            )
        )
        request.current_step = ", ".join(names)
        request.outcome = ""


def element_name(session: Session, instance: ProcessInstance, element_id: str) -> str:
    """Return the name of a diagram element of ``instance`` (its id if unnamed)."""
    if not element_id:
        return "unknown step"
    try:
        spec, _ = load_spec(session, instance.definition)
        task_spec = spec.task_specs.get(element_id)
    except Exception:  # noqa: BLE001 - a name is a nicety; the id will do
        logger.debug("No spec to name element %s", element_id, exc_info=True)
        task_spec = None
    return getattr(task_spec, "bpmn_name", None) or element_id


def _outcome(session, request: ProvisioningRequest, instance) -> str:
    status = request.status
    if status == RequestStatus.COMPLETED:
        return _completed_outcome(session, request)
    if status in (RequestStatus.REJECTED, RequestStatus.CANCELLED):
        who = session.scalar(
            select(HumanTask.completed_by)
            .where(
                HumanTask.instance_id == instance.id,
                HumanTask.task_spec == APPROVE_STEP,
                HumanTask.status == TaskStatus.COMPLETED,
            )
            .order_by(HumanTask.completed_at.desc(), HumanTask.id.desc())
            .limit(1)
        )
        return f"{status.capitalize()} by {who or 'an approver'}."
    if status == RequestStatus.EXPIRED:
        return "No approver decided in time, so the request expired."
    return (
        f"The process ended at '{instance.end_event}', which is not a known outcome "
        "of a request; ask an administrator to check the process model."
    )


def _completed_outcome(session, request: ProvisioningRequest) -> str:
    kind = request.request_type
    if kind == "ondemand_tokencode":
        return "On-demand tokencodes are enabled."
    if kind == "group_membership":
        return f"Added to group '{request.group_name}'."
    if kind == "new_account":
        return f"Account '{request.details.get('username', '')}' created."
    tokens = list(
        session.scalars(
            select(Token).where(Token.request_id == request.id).order_by(Token.id)
        )
    )
    if not tokens:
        return (
            "Approved; the token is assigned and shipped by a third party outside "
            "this system."
        )
    texts = []
    for token in tokens:
        if token.model.token_class == TokenClass.SOFTWARE:
            texts.append(
                f"Software token {token.serial} ({token.model.code}) issued; enable "
                "it with the activation link."
            )
        else:
            tracking = (
                f", tracking number {token.tracking_number}"
                if token.tracking_number
                else ""
            )
            carrier = _CARRIERS.get(token.carrier or "", token.carrier or "")
            texts.append(
                f"Token {token.serial} ({token.model.code}) shipped by "
                f"{carrier or 'an unnamed carrier'}{tracking}."
            )
    return " ".join(texts)


# -- reading ----------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One readable step in the life of a request."""

    at: datetime
    actor: str
    action: str
    text: str
    comment: str = ""
    #: the internal note, or None when the reader may not see notes
    note: str | None = None
    element_id: str | None = None


@dataclass(frozen=True)
class Holder:
    """Who holds an open task of a request: an assignee or a queue in a domain."""

    task_id: str
    task_name: str
    assignee: str | None
    candidate_groups: tuple[str, ...]
    domain_path: str
    since: datetime
    due_at: datetime | None
    #: the people who may work it now (scope and separation of duties applied)
    people: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        if self.assignee:
            return f"{self.assignee} ({self.task_name})"
        queues = " or ".join(g.replace("_", " ") + "s" for g in self.candidate_groups)
        return f"{queues or 'nobody'} of {self.domain_path} ({self.task_name})"


@dataclass
class RequestView:
    """A request as ``reader`` may see it.

    For the requester, ``instance`` is stripped of history, open tasks and
    internal notes; ``notes`` is empty.
    """

    request: ProvisioningRequest
    instance: InstanceView
    timeline: list[TimelineEntry]
    holders: list[Holder]
    current_step: str
    is_staff: bool
    comments: list[TimelineEntry] = field(default_factory=list)
    notes: list[TimelineEntry] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    delivery: dict[str, Any] = field(default_factory=dict)
    #: open tasks of this request that the reader may work
    my_tasks: list[HumanTask] = field(default_factory=list)
    can_cancel: bool = False


def may_see(actor: Actor, request: ProvisioningRequest) -> bool:
    """Return whether ``actor`` may see ``request`` at all."""
    return actor.username == request.requester or _is_staff(actor, request)


def _is_staff(actor: Actor, request: ProvisioningRequest) -> bool:
    # The requester never reads their own request as staff, even when they
    # hold a role over their own domain: notes about them stay hidden.
    return actor.username != request.requester and bool(
        actor.roles_over(request.domain_path) & set(ROLES)
    )


def get_request(session: Session, actor: Actor, request_id: int) -> RequestView:
    """Return a request with its timeline, who holds it now and its current step.

    :raises NotFound: no such request, or ``actor`` is neither its requester
        nor staff whose scope covers its security domain (the two are not
        told apart, so that request numbers reveal nothing).
    """
    request = session.get(ProvisioningRequest, request_id)
    if request is None or request.instance_id is None or not may_see(actor, request):
        raise NotFound(
            f"Request {request_id} does not exist or is not yours to see; check "
            "the number."
        )
    staff = _is_staff(actor, request)
    view = instances.describe_instance(session, request.instance_id)
    instance, open_tasks = view.instance, view.open_tasks
    timeline = _timeline(session, request, view.history, staff=staff)
    delivery = _delivery(view.data, actor, request)

    if not staff:
        view = replace(
            view,
            history=[],
            open_tasks=[],
            data={k: v for k, v in view.data.items() if k not in STAFF_ONLY_VARIABLES},
        )
    elif not _sees_delivery_secrets(actor, request):
        view = replace(
            view,
            data={k: v for k, v in view.data.items() if k not in DELIVERY_SECRETS},
        )

    return RequestView(
        request=request,
        instance=view,
        timeline=timeline,
        holders=[_holder(session, t, instance) for t in open_tasks],
        current_step=request.current_step,
        is_staff=staff,
        comments=[e for e in timeline if e.comment],
        notes=[e for e in timeline if e.note],
        incidents=[i for i in view.incidents if i.status == IncidentStatus.OPEN],
        delivery=delivery,
        my_tasks=[t for t in open_tasks if _may_work(session, actor, t, instance)],
        can_cancel=request.is_open
        and (
            actor.username == request.requester
            or actor.has_role(ADMINISTRATOR, request.domain_path)
        ),
    )


def _sees_delivery_secrets(actor: Actor, request: ProvisioningRequest) -> bool:
    return actor.username == request.requester or any(
        actor.has_role(role, request.domain_path)
        for role in (TOKEN_DISTRIBUTOR, TOKEN_ADMINISTRATOR, ADMINISTRATOR)
    )


def _delivery(data: dict[str, Any], actor: Actor, request) -> dict[str, Any]:
    keys = ["serial_number", "carrier", "tracking_number", "delivery_method"]
    if _sees_delivery_secrets(actor, request):
        keys += list(DELIVERY_SECRETS)
    return {k: data[k] for k in keys if data.get(k)}


def _may_work(session, actor: Actor, task: HumanTask, instance) -> bool:
    try:
        instances.check_may_work(session, actor, task, instance)
    except PermissionDenied:
        return False
    return True


def _holder(session: Session, task: HumanTask, instance: ProcessInstance) -> Holder:
    groups = tuple(task.candidate_groups)
    people: list[str] = []
    if task.assignee:
        people = [task.assignee]
    elif groups:
        done_by = set(
            session.scalars(
                select(HumanTask.completed_by).where(
                    HumanTask.instance_id == instance.id,
                    HumanTask.task_spec == task.task_spec,
                    HumanTask.completed_by.is_not(None),
                )
            )
        )
        rows = session.execute(
            select(User.username, SecurityDomain.path)
            .join(RoleGrant, RoleGrant.user_id == User.id)
            .join(SecurityDomain, SecurityDomain.id == RoleGrant.domain_id)
            .where(RoleGrant.role.in_(groups), User.is_active)
            .order_by(User.username)
        )
        people = [
            name
            for name, scope in rows
            if in_scope(scope, task.domain_path)
            and name != instance.initiator
            and name not in done_by
        ]
        people = list(dict.fromkeys(people + list(task.candidate_users)))
    return Holder(
        task_id=task.id,
        task_name=task.name,
        assignee=task.assignee,
        candidate_groups=groups,
        domain_path=task.domain_path,
        since=task.created_at,
        due_at=task.due_at,
        people=tuple(people),
    )


_STEP_TEXT = {
    APPROVE_STEP: "approval",
    HARDWARE_STEP: "distribution of the hardware token",
    SOFTWARE_STEP: "delivery of the software token",
}
_DECISION_TEXT = {"approve": "Approved", "reject": "Rejected", "cancel": "Cancelled"}
_END_TEXT = {
    "request_completed": "Request completed",
    "request_rejected": "Request rejected",
    "request_cancelled": "Request cancelled",
    "request_expired": "Request expired: no decision in time",
}
_TIMER_TEXT = {
    "approval_reminder": "Reminder sent to the approvers",
    "approval_escalation": "Request escalated",
    "approval_timeout": "No decision in time",
}
_CARRIERS = {
    "dhl": "DHL",
    "ups": "UPS",
    "fedex": "FedEx",
    "postal_service": "the postal service",
    "courier": "courier",
    "hand_delivery": "hand delivery",
}


def _timeline(
    session, request: ProvisioningRequest, history: list[HistoryEntry], *, staff: bool
) -> list[TimelineEntry]:
    """Turn history entries into steps a person reads; notes only for staff."""
    label = REQUEST_TYPES[request.request_type].label
    rounds = 0
    entries = []
    for h in history:
        data = h.data or {}
        comment, note = "", None
        element = h.element_id or ""
        step = _STEP_TEXT.get(element, element.replace("_", " "))
        if h.action == "instance_started":
            by = request.details.get("submitted_by")
            text = f"{label} submitted by {h.actor}" + (
                f" (entered by {by})" if by else ""
            )
        elif h.action == "task_created":
            if element == APPROVE_STEP:
                rounds += 1
                text = f"Waiting for approval (step {rounds})"
            else:
                text = f"Waiting for {step}"
        elif h.action == "task_completed":
            text = _completed_text(h, data, step)
            comment = (data.get("comment") or "").strip()
            note = (data.get("note") or "").strip() if staff else None
        elif h.action == "task_saved":
            text = f"Deferred by {h.actor}: {step} kept open"
            if staff:
                comment = (data.get("comment") or "").strip()
                note = (data.get("note") or "").strip()
        elif h.action == "task_claimed":
            text = f"{step.capitalize()} taken by {h.actor}"
        elif h.action == "task_unclaimed":
            text = f"{step.capitalize()} put back in the queue by {h.actor}"
        elif h.action == "task_assigned":
            text = h.message
        elif h.action == "task_cancelled":
            text = f"{step.capitalize()} withdrawn"
        elif h.action == "timer_fired":
            text = _TIMER_TEXT.get(element, h.message)
        elif h.action == "instance_completed":
            text = _END_TEXT.get(element, f"Ended at '{element}'")
        elif h.action == "instance_cancelled":
            text = f"Cancelled by {h.actor}: {data.get('reason', '')}".rstrip(": ")
        elif h.action == "incident_opened":
            text = (
                h.message
                if staff
                else f"The step '{step}' failed; the request waits until an "
                "administrator retries it"
            )
        elif h.action == "incident_retried":
            text = f"Failed step retried by {h.actor}"
        else:
            continue
        entries.append(
            TimelineEntry(
                at=h.at,
                actor=h.actor,
                action=h.action,
                text=text,
                comment=comment,
                note=note or None,
                element_id=h.element_id,
            )
        )
    return entries


def _completed_text(h: HistoryEntry, data: dict[str, Any], step: str) -> str:
    element = h.element_id
    if element == APPROVE_STEP:
        text = f"{_DECISION_TEXT.get(data.get('decision'), 'Decided')} by {h.actor}"
        if data.get("token_model"):
            text += f"; token model set to {data['token_model']}"
        return text
    if element == HARDWARE_STEP:
        carrier = _CARRIERS.get(data.get("carrier") or "", data.get("carrier") or "")
        tracking = (
            f", tracking number {data['tracking_number']}"
            if data.get("tracking_number")
            else ""
        )
        return (
            f"Token {data.get('serial_number', '')} sent by {carrier}{tracking} "
            f"(recorded by {h.actor})"
        )
    if element == SOFTWARE_STEP:
        method = {
            "activation_email": "an activation link by e-mail",
            "qr_in_person": "a QR code in person",
        }.get(data.get("delivery_method") or "", "a method not named")
        return f"Software token to be delivered by {method} (chosen by {h.actor})"
    return f"{step.capitalize()} done by {h.actor}"


def list_requests(
    session: Session,
    actor: Actor,
    *,
    mine: bool = True,
    status: str | None = None,
    request_type: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[ProvisioningRequest]:
    """Return requests newest first: the actor's own, or those in their scope.

    :param mine: True for the actor's own requests; False for the requests of
        the security domains where the actor holds any staff role (their own
        requests excluded).
    :raises ValidationFailed: an unknown status or request type, or a limit
        or offset out of range.
    """
    errors = {}
    if status and status not in RequestStatus.ALL:
        errors["status"] = f"Status must be one of: {', '.join(RequestStatus.ALL)}."
    if request_type and request_type not in REQUEST_TYPES:
        errors["request_type"] = (
            f"Request type must be one of: {', '.join(REQUEST_TYPES)}."
        )
    if not 1 <= limit <= MAX_LIST_LIMIT:
        errors["limit"] = f"Limit must be between 1 and {MAX_LIST_LIMIT}."
    if not 0 <= offset <= MAX_LIST_OFFSET:
        errors["offset"] = f"Offset must be between 0 and {MAX_LIST_OFFSET}."
    if errors:
        raise ValidationFailed("The list query has errors.", errors)

    query = select(ProvisioningRequest)
    if mine:
        query = query.where(ProvisioningRequest.requester == actor.username)
    else:
        scopes = sorted({scope for role, scope in actor.grants if role in ROLES})
        if not scopes:
            return []
        query = query.where(
            ProvisioningRequest.requester != actor.username,
            or_(
                *(
                    or_(
                        ProvisioningRequest.domain_path == scope,
                        ProvisioningRequest.domain_path.startswith(
                            scope + "/", autoescape=True
                        ),
                    )
                    for scope in scopes
                )
            ),
        )
    if status:
        query = query.where(ProvisioningRequest.status == status)
    if request_type:
        query = query.where(ProvisioningRequest.request_type == request_type)
    query = query.order_by(
        ProvisioningRequest.created_at.desc(), ProvisioningRequest.id.desc()
    )
    return list(session.scalars(query.limit(limit).offset(offset)))


# -- acting on a request ----------------------------------------------------


def cancel_request(
    session: Session, actor: Actor, request_id: int, reason: str = ""
) -> ProvisioningRequest:
    """Cancel a pending request and every open task of it.

    :param reason: why; a default naming the requester is used when empty.
    :raises NotFound: no such request, or the actor may not see it.
    :raises PermissionDenied: the actor is neither the requester nor an
        administrator of the request's security domain.
    :raises InstanceNotActive: the request is no longer pending.
    """
    request = session.get(ProvisioningRequest, request_id)
    if request is None or not may_see(actor, request):
        raise NotFound(
            f"Request {request_id} does not exist or is not yours to see; check "
            "the number."
        )
    is_requester = actor.username == request.requester
    if not is_requester and not actor.has_role(ADMINISTRATOR, request.domain_path):
        raise PermissionDenied(
            f"You may not cancel request {request.id}; only its requester or an "
            f"administrator of security domain '{request.domain_path}' can."
        )
    if not request.is_open or request.instance_id is None:
        raise InstanceNotActive(
            f"Request {request.id} is already {request.status}; only a pending "
            "request can be cancelled."
        )
    reason = (reason or "").strip() or (
        "Cancelled by the requester"
        if is_requester
        else f"Cancelled by {actor.username}"
    )
    instances.cancel_instance(session, request.instance_id, actor=actor, reason=reason)
    return request


def _request_task(
    session: Session, actor: Actor, task_id: str, steps: tuple[str, ...]
) -> tuple[HumanTask, ProvisioningRequest]:
    task = instances.get_task(session, task_id)
    request = session.scalars(
        select(ProvisioningRequest).where(
            ProvisioningRequest.instance_id == task.instance_id
        )
    ).first()
    if request is None:
        raise NotFound(
            f"Task {task_id} is not part of a provisioning request; complete it "
            "with its task form instead."
        )
    instances.check_may_work(session, actor, task, task.instance)
    if task.task_spec not in steps:
        wanted = " or ".join(_STEP_TEXT.get(s, s) for s in steps)
        raise ValidationFailed(
            f"Task '{task.name}' of request {request.id} is not a step of "
            f"{wanted}; open the request to see what it waits for."
        )
    return task, request


def decide(
    session: Session,
    actor: Actor,
    task_id: str,
    *,
    decision: str,
    comment: str = "",
    note: str = "",
    token_model: str | None = None,
    settings: Settings | None = None,
) -> ProvisioningRequest:
    """Take an approval step: approve, reject, cancel or defer.

    :param decision: ``approve`` passes the step; ``reject`` and ``cancel``
        end the request at once (the diagram's gateway ends the process, so
        no task of it stays open); ``defer`` saves the comment and note and
        keeps the task open.
    :param comment: shown to the requester; required to reject or cancel.
    :param note: internal note, shown to staff only.
    :param token_model: another model of the same token class, or None.
    :returns: the request after the step.
    :raises PermissionDenied: scope or separation of duties forbid it.
    :raises ValidationFailed: bad decision, missing comment, or a token model
        of another class; one message per field.
    :raises ConflictError: the task was completed or withdrawn meanwhile.
    """
    task, request = _request_task(session, actor, task_id, (APPROVE_STEP,))
    comment, note = (comment or "").strip(), (note or "").strip()
    errors: dict[str, str] = {}
    if decision not in DECISIONS:
        errors["decision"] = f"Decision must be one of: {', '.join(DECISIONS)}."
    elif decision in ("reject", "cancel") and not comment:
        verb = "rejecting" if decision == "reject" else "cancelling"
        errors["comment"] = (
            f"Give the requester a reason for {verb} the request in the comment."
        )
    changed_model = token_model is not None and token_model.strip() not in (
        "",
        request.token_model,
    )
    if changed_model:
        token_model = token_model.strip()
        if request.token_class == NO_TOKEN:
            errors["token_model"] = (
                f"Request {request.id} is not for a token; leave the token model empty."
            )
        else:
            error = token_model_error(session, token_model, request.token_class)
            if error:
                errors["token_model"] = error
    if errors:
        raise ValidationFailed(
            "The decision has errors; correct them and submit again.", errors
        )

    data: dict[str, Any] = {"comment": comment, "note": note}
    if changed_model:
        data["token_model"] = token_model
    if decision == "defer":
        instances.save_task(session, task_id, actor=actor, data=data)
    else:
        data["decision"] = decision
        instances.complete_task(
            session, task_id, actor=actor, data=data, settings=settings
        )
    logger.info(
        "Request %s: %s by %s",
        request.id,
        decision,
        actor.username,
        extra={"request_id": request.id, "task_id": task_id},
    )
    return request


def distribute(
    session: Session,
    actor: Actor,
    task_id: str,
    *,
    serial_number: str | None = None,
    shipping_address: str | None = None,
    carrier: str | None = None,
    tracking_number: str | None = None,
    delivery_method: str | None = None,
    settings: Settings | None = None,
) -> ProvisioningRequest:
    """Take the distribution step of a token request.

    For a hardware token, ``serial_number`` must be an available token of the
    requested model in the distributor's scope; the shipping address defaults
    to the one given with the request. For a software token,
    ``delivery_method`` is ``activation_email`` (default) or ``qr_in_person``.

    :returns: the request after the step (completed unless a service failed).
    :raises PermissionDenied: scope or separation of duties forbid it.
    :raises ValidationFailed: one message per bad field.
    """
    task, request = _request_task(
        session, actor, task_id, (HARDWARE_STEP, SOFTWARE_STEP)
    )
    if task.task_spec == SOFTWARE_STEP:
        data = {"delivery_method": (delivery_method or "activation_email").strip()}
    else:
        # complete_task checks the serial against the inventory with the
        # form (see _check_hardware_distribution), after taking the task's
        # lock, so a second distributor hears who was first.
        data = {
            "serial_number": (serial_number or "").strip(),
            "shipping_address": (shipping_address or "").strip()
            or request.details.get("shipping_address", ""),
            "carrier": (carrier or "").strip(),
            "tracking_number": (tracking_number or "").strip(),
        }
    instances.complete_task(session, task_id, actor=actor, data=data, settings=settings)
    logger.info(
        "Request %s: distribution recorded by %s",
        request.id,
        actor.username,
        extra={"request_id": request.id, "task_id": task_id},
    )
    return request


def _serial_error(session, actor: Actor, request, serial: str) -> str | None:
    available = inventory.available_serials(
        session, actor, model_code=request.token_model, domain_path=request.domain_path
    )
    serials = [t.serial for t in available]
    shown = ", ".join(serials[:10]) + (", ..." if len(serials) > 10 else "")
    if not serial:
        if not serials:
            return (
                f"Serial number is required, but no {request.token_model} token is "
                "available in your scope; ask a token administrator to import some."
            )
        return f"Serial number is required; choose one of: {shown}."
    if serial not in serials:
        return (
            f"Token '{serial}' is not an available {request.token_model} token in "
            f"your scope; choose one of: {shown or 'none available'}."
        )
    return None


# The engine runs these for every entry point, not only for this module.
for _key in REQUEST_TYPES:
    instances.guard_start(_key, _guard_request_start)
    instances.check_completion(_key, HARDWARE_STEP, _check_hardware_distribution)

# A policy row outside this range would fail every request it matches at run
# time, where no retry can mend it; refuse it when the table is deployed.
validation.register_output_values(
    "workflow_policy",
    "approval_steps",
    range(0, 5),
    "a request takes zero to four approval steps",
)
