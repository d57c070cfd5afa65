"""Who is signed in: the flask-login user and the engine actor behind it."""

from __future__ import annotations

from flask import current_app
from flask_login import UserMixin, current_user
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
