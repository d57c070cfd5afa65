"""The console's fixed forms; every one carries a CSRF token (Flask-WTF).

Task forms are generated from the task's form fields at run time and carry
the token through ``csrf_token()`` in the template; their values are checked
by the engine (:func:`engine.instances.validate_form`), not here.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, MultipleFileField
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Optional,
    Regexp,
)

from engine.provisioning.directory import MIN_PASSWORD_LENGTH


class LoginForm(FlaskForm):
    username = StringField(
        "User name",
        validators=[DataRequired("Enter your user name."), Length(max=150)],
        render_kw={"autocomplete": "username", "autofocus": True},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired("Enter your password.")],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField()


class ActionForm(FlaskForm):
    """A button that changes something and needs nothing but the CSRF token."""


class ReasonForm(FlaskForm):
    reason = TextAreaField(
        "Reason",
        validators=[DataRequired("Give a reason."), Length(max=2000)],
        render_kw={"rows": 2},
    )


class CancelRequestForm(FlaskForm):
    """Cancel a pending request; without a reason the engine records who did."""

    reason = TextAreaField(
        "Reason (optional)",
        validators=[
            Optional(),
            Length(max=2000, message="Keep the reason under 2,000 characters."),
        ],
        render_kw={"rows": 2, "maxlength": 2000},
    )


class AssignForm(FlaskForm):
    assignee = StringField(
        "Assign to (user name)",
        validators=[DataRequired("Enter the user name to assign the task to.")],
    )


class UploadDeploymentForm(FlaskForm):
    files = MultipleFileField(
        "BPMN and DMN files",
        render_kw={"accept": ".bpmn,.dmn,.xml", "multiple": True},
    )
    name = StringField("Deployment name (optional)", validators=[Length(max=200)])


class ModelerForm(FlaskForm):
    xml = HiddenField(validators=[InputRequired("The diagram is empty.")])
    filename = HiddenField(validators=[InputRequired()])


#: the shape of a security domain path, checked before the scope so that a
#: typing mistake is reported as one, not as a domain outside one's scope
DOMAIN_PATH = r"^[a-z0-9][a-z0-9_-]{0,49}(/[a-z0-9][a-z0-9_-]{0,49})*$"


def _trimmed_path(value: str | None) -> str | None:
    return value.strip().strip("/") if value else value


class DomainForm(FlaskForm):
    path = StringField(
        "Path",
        validators=[
            DataRequired("Enter the domain path, e.g. acme/emea/paris."),
            Regexp(
                DOMAIN_PATH,
                message="Write the path in lower-case letters, digits, '-' and "
                "'_', in segments joined by '/', such as acme/emea/paris.",
            ),
        ],
        filters=[_trimmed_path],
        description="Parent domains first: acme/emea/paris needs acme/emea.",
    )
    name = StringField("Display name (optional)", validators=[Length(max=100)])


class UserForm(FlaskForm):
    username = StringField(
        "User name", validators=[DataRequired("Enter a user name."), Length(max=150)]
    )
    display_name = StringField(
        "Full name", validators=[DataRequired("Enter the full name.")]
    )
    email = EmailField(
        "E-mail",
        validators=[
            DataRequired("Enter an e-mail address."),
            Regexp(
                r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                message="Enter an e-mail address such as jane@example.com.",
            ),
        ],
    )
    domain_path = SelectField("Security domain", choices=[])
    password = PasswordField(
        "Initial password (optional)",
        validators=[
            Optional(),
            Length(
                min=MIN_PASSWORD_LENGTH,
                message=f"Use at least {MIN_PASSWORD_LENGTH} characters.",
            ),
        ],
        render_kw={"autocomplete": "new-password", "minlength": MIN_PASSWORD_LENGTH},
    )


class GrantForm(FlaskForm):
    role = SelectField("Role", choices=[])
    domain_path = SelectField("In security domain", choices=[])


class PasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[
            DataRequired("Enter a password."),
            Length(
                min=MIN_PASSWORD_LENGTH,
                message=f"Use at least {MIN_PASSWORD_LENGTH} characters.",
            ),
        ],
        description=f"At least {MIN_PASSWORD_LENGTH} characters.",
        render_kw={"autocomplete": "new-password", "minlength": MIN_PASSWORD_LENGTH},
    )


class ImportTokensForm(FlaskForm):
    file = FileField("CSV file (serial,model,expiry)")
    domain_path = SelectField("Inventory of security domain", choices=[])
    skip_bad_rows = BooleanField("Import the good rows even if some rows are bad")


class CodeForm(FlaskForm):
    code = StringField(
        "Code shown by the app",
        validators=[DataRequired("Enter the 6-digit code shown by the app.")],
        render_kw={
            "inputmode": "numeric",
            "autocomplete": "one-time-code",
            "pattern": "[0-9 ]*",
        },
    )


class SerialForm(FlaskForm):
    serial = HiddenField(validators=[DataRequired()])
