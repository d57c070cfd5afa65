"""Demo data: a small organisation to try the product with.

Security domains ``acme``, ``acme/emea``, ``acme/emea/paris``,
``acme/americas`` and ``acme/apac``; about twenty users holding every role;
two hardware token models and a software token profile; thirty available
hardware tokens in each region's inventory and a few tokens already in use.
Every demo user's password is ``demo-password``.

Loading is idempotent: what exists already is left as it is (passwords
included), what is missing is added, so running it twice gives the same data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy.orm import Session

from ..config import Settings
from ..identity import (
    ADMINISTRATOR,
    REQUEST_APPROVER,
    SYSTEM,
    TOKEN_ADMINISTRATOR,
    TOKEN_DISTRIBUTOR,
)
from . import directory, inventory
from .inventory_models import Token, TokenClass, TokenEvent, TokenState

logger = logging.getLogger(__name__)

DEMO_PASSWORD = "demo-password"

DEMO_DOMAINS = (
    ("acme", "ACME Corporation"),
    ("acme/emea", "Europe, Middle East and Africa"),
    ("acme/emea/paris", "Paris office"),
    ("acme/americas", "Americas"),
    ("acme/apac", "Asia Pacific"),
)

#: (username, display name, domain, [(role, scope), ...])
DEMO_USERS: tuple[tuple[str, str, str, tuple[tuple[str, str], ...]], ...] = (
    # The APAC policy row asks three approvals and APAC has two approvers of
    # its own: the administrator also approves, organisation-wide.
    (
        "admin",
        "Alex Admin",
        "acme",
        ((ADMINISTRATOR, "acme"), (REQUEST_APPROVER, "acme")),
    ),
    ("tadmin", "Toni Inventory", "acme", ((TOKEN_ADMINISTRATOR, "acme"),)),
    ("aschmidt", "Anna Schmidt", "acme/emea", ((REQUEST_APPROVER, "acme/emea"),)),
    ("mdubois", "Marc Dubois", "acme/emea", ((REQUEST_APPROVER, "acme/emea"),)),
    ("lrossi", "Lucia Rossi", "acme/emea", ((TOKEN_DISTRIBUTOR, "acme/emea"),)),
    ("pnovak", "Petr Novak", "acme/emea", ((TOKEN_ADMINISTRATOR, "acme/emea"),)),
    ("tmuller", "Thomas Muller", "acme/emea", ()),
    (
        "hbernard",
        "Hugo Bernard",
        "acme/emea/paris",
        ((REQUEST_APPROVER, "acme/emea/paris"),),
    ),
    ("jdoe", "Jane Doe", "acme/emea/paris", ()),
    ("cmartin", "Claire Martin", "acme/emea/paris", ()),
    ("jsmith", "John Smith", "acme/americas", ((REQUEST_APPROVER, "acme/americas"),)),
    (
        "mgarcia",
        "Maria Garcia",
        "acme/americas",
        ((REQUEST_APPROVER, "acme/americas"),),
    ),
    (
        "dwilson",
        "David Wilson",
        "acme/americas",
        ((TOKEN_DISTRIBUTOR, "acme/americas"),),
    ),
    ("ebrown", "Emily Brown", "acme/americas", ()),
    ("rlopez", "Ricardo Lopez", "acme/americas", ()),
    ("ktanaka", "Kenji Tanaka", "acme/apac", ((REQUEST_APPROVER, "acme/apac"),)),
    ("wchen", "Wei Chen", "acme/apac", ((REQUEST_APPROVER, "acme/apac"),)),
    ("spatel", "Sanjay Patel", "acme/apac", ((TOKEN_DISTRIBUTOR, "acme/apac"),)),
    ("ylee", "Yuna Lee", "acme/apac", ()),
    ("akumar", "Arjun Kumar", "acme/apac", ()),
)

#: (code, name, class, description)
DEMO_MODELS = (
    ("SID700", "SID700 key fob", TokenClass.HARDWARE, "Hardware key fob, 6 digits"),
    ("SID800", "SID800 USB token", TokenClass.HARDWARE, "Hardware token with USB"),
    (
        "AUTHAPP",
        "Authenticator app",
        TokenClass.SOFTWARE,
        "Software token (TOTP) for an authenticator app on a phone",
    ),
)

#: region -> first serial number of its stock (20 SID700 then 10 SID800)
DEMO_STOCK = {"acme/emea": 100001, "acme/americas": 200001, "acme/apac": 300001}
STOCK_PER_REGION = 30

#: (serial, owner, state, days until expiry): tokens already handed out. jdoe's
#: token expires within the replacement window, so its replacement can be tried.
DEMO_IN_USE = (
    ("100101", "jdoe", TokenState.ACTIVE, 20),
    ("100102", "cmartin", TokenState.SHIPPED, 700),
    ("200101", "ebrown", TokenState.ACTIVE, 500),
    ("300101", "ylee", TokenState.ACTIVE, 400),
)

DEMO_GROUPS = (
    ("vpn-users", "May connect to the corporate VPN"),
    ("finance-apps", "May use the finance applications"),
)


@dataclass(frozen=True)
class DemoSummary:
    """How much of the demo data was missing and has been added."""

    domains: int
    users: int
    tokens: int


def load_demo_data(session: Session, settings: Settings | None = None) -> DemoSummary:
    """Add whatever of the demo organisation is missing; return what was added.

    :param settings: unused for now; kept so that the caller's signature
        stays the same when demo software tokens need the encryption key.
    """
    domains = users = tokens = 0

    for path, name in DEMO_DOMAINS:
        if directory.find_domain(session, path) is None:
            directory.create_domain(session, path, name, actor=SYSTEM)
            domains += 1

    for username, display_name, domain, grants in DEMO_USERS:
        if directory.find_user(session, username) is None:
            directory.create_user(
                session,
                username=username,
                display_name=display_name,
                email=f"{username}@acme.example",
                domain_path=domain,
                password=DEMO_PASSWORD,
                actor=SYSTEM,
            )
            users += 1
        for role, scope in grants:
            directory.grant_role(session, username, role, scope, actor=SYSTEM)

    for code, name, token_class, description in DEMO_MODELS:
        if inventory.find_model(session, code) is None:
            inventory.create_token_model(
                session,
                code=code,
                name=name,
                token_class=token_class,
                description=description,
            )

    for name, description in DEMO_GROUPS:
        if directory.find_group(session, name) is None:
            directory.create_group(session, name, description)

    today = date.today()
    for region, first in DEMO_STOCK.items():
        for offset in range(STOCK_PER_REGION):
            model = "SID700" if offset < 20 else "SID800"
            tokens += _ensure_token(
                session, f"{first + offset:06d}", model, region, today + timedelta(1095)
            )
    for serial, owner, state, days in DEMO_IN_USE:
        user = directory.get_user(session, owner)
        region = "/".join(user.domain.path.split("/")[:2])
        if _ensure_token(session, serial, "SID700", region, today + timedelta(days)):
            tokens += 1
            _hand_over(session, serial, owner, state)

    session.flush()
    logger.info(
        "Loaded demo data: %s domains, %s users, %s tokens added",
        domains,
        users,
        tokens,
    )

    return DemoSummary(domains=domains, users=users, tokens=tokens)


def _ensure_token(
    session: Session, serial: str, model_code: str, region: str, expires_on: date
) -> int:
    """Add an available token unless the serial exists; return 1 if added."""
    if inventory.find_token(session, serial) is not None:
        return 0

    token = Token(
        serial=serial,
        model=inventory.get_model(session, model_code),
        state=TokenState.AVAILABLE,
        domain_path=region,
        expires_on=expires_on,
    )
    session.add(token)
    session.add(
        TokenEvent(
            token=token,
            actor="system",
            from_state=None,
            to_state=TokenState.AVAILABLE,
            message="Demo data",
        )
    )
    session.flush()

    return 1


def _hand_over(session: Session, serial: str, owner: str, state: str) -> None:
    """Take a new demo token through assignment and shipping to ``state``."""
    token = inventory.find_token(session, serial)
    token.owner = owner
    steps = [TokenState.ASSIGNED, TokenState.SHIPPED, TokenState.ACTIVE]
    for step in steps[: steps.index(state) + 1]:
        if step == TokenState.SHIPPED:
            token.carrier = "courier"
            token.shipping_address = f"{owner}, ACME internal mail"
        inventory.change_state(
            session, token, step, actor="system", message="Demo data"
        )
