"""Helpers for the inventory, software token, directory and handler tests."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.orm import Session

from engine.identity import Actor, actor_for
from engine.provisioning import directory, inventory
from engine.provisioning.inventory_models import Token, TokenState

PASSWORD = "correct horse battery"
FUTURE = (date.today() + timedelta(days=700)).isoformat()

# username -> (domain, roles as (role, scope))
PEOPLE = {
    "jdoe": ("acme/emea/paris", ()),
    "ebrown": ("acme/americas", ()),
    "emea_admin": ("acme/emea", (("token_administrator", "acme/emea"),)),
    "paris_admin": ("acme/emea/paris", (("token_administrator", "acme/emea/paris"),)),
    "us_admin": ("acme/americas", (("token_administrator", "acme/americas"),)),
    "emea_dist": ("acme/emea", (("token_distributor", "acme/emea"),)),
    "us_dist": ("acme/americas", (("token_distributor", "acme/americas"),)),
    "root": ("acme", (("administrator", "acme"),)),
}


def seed(session: Session) -> None:
    """Create the domains, people and token models the tests share."""
    for path in ("acme", "acme/emea", "acme/emea/paris", "acme/americas"):
        directory.create_domain(session, path, actor="system")
    for username, (domain, roles) in PEOPLE.items():
        directory.create_user(
            session,
            username=username,
            display_name=username.replace("_", " ").title(),
            email=f"{username}@acme.example",
            domain_path=domain,
            # Hashing is slow on purpose; one password is enough for the tests.
            password=PASSWORD if username == "jdoe" else None,
            roles=roles,
            actor="system",
        )
    for code, token_class in (
        ("SID700", "hardware"),
        ("SID800", "hardware"),
        ("AUTHAPP", "software"),
    ):
        inventory.create_token_model(
            session, code=code, name=code, token_class=token_class
        )


def actor(session: Session, username: str) -> Actor:
    return actor_for(session, username)


def add_token(
    session: Session,
    serial: str,
    *,
    model: str = "SID700",
    domain: str = "acme/emea",
    state: str = TokenState.AVAILABLE,
    owner: str | None = None,
    expires_on: date | None = None,
) -> Token:
    """Put one token straight into the inventory, in any state."""
    token = Token(
        serial=serial,
        model=inventory.get_model(session, model),
        state=state,
        owner=owner,
        domain_path=domain,
        expires_on=expires_on or date.today() + timedelta(days=700),
    )
    session.add(token)
    session.flush()
    return token
