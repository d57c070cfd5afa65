"""Signing in and out."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..auth import sign_in, sign_out
from ..extensions import limiter
from ..forms import ActionForm, LoginForm
from .base import writing

logger = logging.getLogger(__name__)

bp = Blueprint("auth_pages", __name__)

LOGIN_LIMIT = "10 per minute"


def _login_username() -> str:
    """Key the per-user login limit on the submitted user name."""
    return "login:" + (request.form.get("username") or "").strip().lower()


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"], key_func=_login_username)
def login():
    """Sign in with user name and password."""
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
        if current_user.is_authenticated:
            return redirect(_safe_next(form.next.data))
    if form.validate_on_submit():
        from engine.provisioning import directory

        username = form.username.data.strip()
        with writing() as session:
            user = directory.authenticate(session, username, form.password.data)
            if user is not None:
                sign_in(user)
        if user is not None:
            logger.info("User %s signed in", username, extra={"user": username})
            return redirect(_safe_next(form.next.data))
        logger.info("Failed sign-in for %s", username, extra={"user": username})
        form.password.errors = [
            "The user name or password is wrong, or the account is disabled. "
            "Check both and try again."
        ]
        return render_template("auth/login.html", form=form), 401
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    """Sign out and forget the session."""
    form = ActionForm()
    if form.validate_on_submit():
        sign_out()
        flash("You are signed out.", "info")
    return redirect(url_for("auth_pages.login"))


def _safe_next(target: str | None) -> str:
    """Return ``target`` if it stays on this site, else the start page."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/"):
            if not target.startswith("//") and "\\" not in target:
                return target
    return url_for("selfservice.home")
