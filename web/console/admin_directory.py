"""Administration of the directory: users, role grants and security domains."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from engine.errors import ConflictError, ValidationFailed
from engine.identity import ADMINISTRATOR, ROLES
from engine.provisioning import directory

from ..auth import role_required
from ..forms import ActionForm, DomainForm, GrantForm, PasswordForm, UserForm
from .admin_bp import bp
from .base import actor, forbid, paginate, reading, require_admin_over, writing

USER_LIMIT = 5000


def _my_domains(session) -> list[str]:
    """Return the domain paths inside the actor's administrator scopes."""
    me = actor()
    return [
        d.path
        for d in directory.list_domains(session)
        if me.has_role(ADMINISTRATOR, d.path)
    ]


def _check_admin_over(path: str, action: str) -> None:
    if not actor().has_role(ADMINISTRATOR, path):
        forbid(
            f"You may not {action} in security domain '{path}': your administrator "
            "role does not cover it."
        )


@bp.route("/users", methods=["GET", "POST"])
@role_required(ADMINISTRATOR)
def users():
    """List the users of my domains; create a user."""
    form = UserForm()
    status = 200
    with reading() as session:
        form.domain_path.choices = _my_domains(session)
    if request.method == "POST":
        _check_admin_over(request.form.get("domain_path", ""), "create users")
    if form.validate_on_submit():
        try:
            with writing() as session:
                directory.create_user(
                    session,
                    username=form.username.data,
                    display_name=form.display_name.data,
                    email=form.email.data,
                    domain_path=form.domain_path.data,
                    password=form.password.data or None,
                    actor=actor().username,
                )
        except ValidationFailed as err:
            _attach_errors(form, err)
            status = 422
        except ConflictError as err:
            form.username.errors = [str(err)]
            status = 409
        else:
            flash(f"Created user {form.username.data.strip()}.", "success")
            return redirect(url_for("admin.user_detail", username=form.username.data))
    elif request.method == "POST":
        status = 422
    query = request.args.get("q", "").strip().lower()
    with reading() as session:
        found = directory.list_users(session, actor(), limit=USER_LIMIT)
        if query:
            found = [
                u
                for u in found
                if query in u.username
                or query in u.display_name.lower()
                or query in u.email.lower()
            ]
        page = paginate(found)
        return render_template("admin/users.html", page=page, form=form), status


def _role_name(role: str) -> str:
    """Name a role as the pages show it: 'request_approver' as 'request approver'."""
    return role.replace("_", " ")


def _attach_errors(form, err: ValidationFailed) -> None:
    """Show the engine's field errors next to the form's fields."""
    placed = False
    for name, message in err.field_errors.items():
        if name in form:
            form[name].errors = [*form[name].errors, message]
            placed = True
    if not placed:
        flash(str(err), "error")


@bp.route("/users/<username>", methods=["GET"])
@role_required(ADMINISTRATOR)
def user_detail(username: str):
    """Show a user with their role grants; grant, revoke, set password, disable."""
    return _user_page(username, PasswordForm())


def _user_page(username: str, password_form: PasswordForm, status: int = 200):
    with reading() as session:
        user = directory.get_user(session, username)
        require_admin_over(user.domain.path, f"User '{username}'")
        grant_form = GrantForm()
        grant_form.role.choices = [(r, r.replace("_", " ")) for r in ROLES]
        grant_form.domain_path.choices = _my_domains(session)
        grant_form.domain_path.data = user.domain.path
        page = render_template(
            "admin/user.html",
            user=user,
            grant_form=grant_form,
            password_form=password_form,
            action_form=ActionForm(),
        )
    return page, status


@bp.post("/users/<username>/grants")
@role_required(ADMINISTRATOR)
def user_grant(username: str):
    """Grant a role within a security domain I administer."""
    form = GrantForm()
    form.role.choices = [(r, r) for r in ROLES]
    with reading() as session:
        form.domain_path.choices = _my_domains(session)
        user = directory.get_user(session, username)
        require_admin_over(user.domain.path, f"User '{username}'")
        who = f"{user.display_name} ({username})"
    _check_admin_over(request.form.get("domain_path", ""), "grant roles")
    if not form.validate():
        flash("Choose a role and one of your security domains.", "error")
        return redirect(url_for("admin.user_detail", username=username))
    with writing() as session:
        directory.grant_role(
            session,
            username,
            form.role.data,
            form.domain_path.data,
            actor=actor().username,
        )
    flash(
        f"{who} now holds the {_role_name(form.role.data)} role in "
        f"{form.domain_path.data}.",
        "success",
    )
    return redirect(url_for("admin.user_detail", username=username))


@bp.post("/users/<username>/grants/revoke")
@role_required(ADMINISTRATOR)
def user_revoke(username: str):
    """Take a role grant away."""
    role = request.form.get("role", "")
    path = request.form.get("domain_path", "")
    with writing() as session:
        user = directory.get_user(session, username)
        require_admin_over(user.domain.path, f"User '{username}'")
        _check_admin_over(path, "revoke roles")
        if username == actor().username and role == ADMINISTRATOR:
            forbid(
                "You may not revoke your own administrator role; ask another "
                "administrator, so that a domain is never left without one."
            )
        directory.revoke_role(session, username, role, path, actor=actor().username)
        who = f"{user.display_name} ({username})"
    flash(f"{who} no longer holds the {_role_name(role)} role in {path}.", "success")
    return redirect(url_for("admin.user_detail", username=username))


@bp.post("/users/<username>/password")
@role_required(ADMINISTRATOR)
def user_password(username: str):
    """Set a user's password."""
    form = PasswordForm()
    with reading() as session:
        user = directory.get_user(session, username)
        require_admin_over(user.domain.path, f"User '{username}'")
    if not form.validate():
        return _user_page(username, form, 422)
    try:
        with writing() as session:
            directory.set_password(
                session, username, form.password.data, actor=actor().username
            )
    except ValidationFailed as err:
        form.password.errors = [err.field_errors.get("password", str(err))]
        return _user_page(username, form, 422)
    flash(f"The password of {username} is set.", "success")
    return redirect(url_for("admin.user_detail", username=username))


@bp.post("/users/<username>/active")
@role_required(ADMINISTRATOR)
def user_active(username: str):
    """Disable or re-enable a user's account."""
    enable = request.form.get("active") == "1"
    with writing() as session:
        user = directory.get_user(session, username)
        require_admin_over(user.domain.path, f"User '{username}'")
        if username == actor().username and not enable:
            forbid("You may not disable your own account.")
        directory.set_active(session, username, enable, actor=actor().username)
    flash(
        f"The account of {username} is {'enabled' if enable else 'disabled'}.",
        "success",
    )
    return redirect(url_for("admin.user_detail", username=username))


@bp.route("/domains", methods=["GET", "POST"])
@role_required(ADMINISTRATOR)
def domains():
    """Show the security domain tree; create a sub-domain."""
    form = DomainForm()
    status = 200
    if form.validate_on_submit():
        path = form.path.data.strip().strip("/")
        parent = path.rsplit("/", 1)[0] if "/" in path else path
        _check_admin_over(parent, "create security domains")
        try:
            with writing() as session:
                directory.create_domain(
                    session, path, form.name.data or None, actor=actor().username
                )
        except (ValidationFailed, ConflictError) as err:
            form.path.errors = [str(err)]
            status = 422
        else:
            flash(f"Created security domain {path}.", "success")
            return redirect(url_for("admin.domains"))
    elif request.method == "POST":
        status = 422
    with reading() as session:
        tree = [
            {
                "domain": d,
                "depth": d.path.count("/"),
                "mine": actor().has_role(ADMINISTRATOR, d.path),
            }
            for d in directory.list_domains(session)
        ]
        return render_template("admin/domains.html", tree=tree, form=form), status
