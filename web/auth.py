"""Who is signed in: the flask-login user and the engine actor behind it."""

from __future__ import annotations

from functools import wraps

from flask import abort, current_app, session
from flask_login import (
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
)
from sqlalchemy import select

from engine.identity import Actor, actor_from_user
from engine.models import User

from .extensions import login_manager


class LoginUser(UserMixin):
    """A signed-in user; ``actor`` is what engine functions take."""

    def __init__(self, user: User, *, via: str = "session"):
        self.id = str(user.id)
        self.username = user.username
        self.display_name = user.display_name
        self.email = user.email
        self.domain_path = user.domain.path
        self.active = user.is_active
        self.actor: Actor = actor_from_user(user)
        self.via = via

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_admin(self) -> bool:
        return self.actor.is_admin

    def has_role(self, role: str) -> bool:
        return self.actor.has_role(role)


def database():
    return current_app.extensions["database"]


def settings():
    return current_app.extensions["settings"]


@login_manager.user_loader
def load_user(user_id: str) -> LoginUser | None:
    with database().read() as session:
        user = session.scalars(select(User).where(User.id == int(user_id))).first()
        if user is None or not user.is_active:
            return None
        return LoginUser(user)


def current_actor() -> Actor:
    return current_user.actor


def role_required(*roles: str):
    """Refuse a view with 403 unless the signed-in user holds one of ``roles``.

    The role may be held in any security domain; views that act on one
    request or user check the scope again against its domain.
    """

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not any(current_user.actor.has_role(r) for r in roles):
                needed = " or ".join(r.replace("_", " ") for r in roles)
                abort(403, description=f"This page needs the {needed} role.")
            return view(*args, **kwargs)

        return login_required(wrapper)

    return decorate


def sign_in(user: User) -> LoginUser:
    """Start a session for ``user`` (already authenticated) and return it."""
    session.clear()
    signed_in = LoginUser(user)
    login_user(signed_in)
    return signed_in


def sign_out() -> None:
    """End the current session, keeping nothing of it."""
    logout_user()
    session.clear()
