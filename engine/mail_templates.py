"""Default e-mail templates and the variables they may use.

This module is data only: the texts an administrator starts from when
editing a template, and the documented set of variables that
:func:`engine.mail.validate_template` checks templates against. Rendering
lives in :mod:`engine.mail`.

Every template is a complete Jinja2 source with no ``extends`` or
``include``, so that what an administrator sees in the editor is exactly
what is rendered. The shared greeting, layout and footer are therefore
joined in here, once, when the module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

EVENTS: tuple[str, ...] = (
    "submitted",
    "approval_needed",
    "distribution_needed",
    "approved",
    "rejected",
    "cancelled",
    "completed",
    "failed",
    "reminder",
    "escalation",
    "expired",
    "incident",
)

TEMPLATE_KINDS: tuple[str, ...] = ("subject", "text", "html")

# Dotted names are fields of an object; plain names are single values.
# Dates are timezone-aware datetimes; format them with the ``datetime`` or
# ``date`` filter. Any value except ``site_name`` and ``link`` may be empty
# (None) for some events, so templates test it with ``{% if ... %}``.
TEMPLATE_VARIABLES: MappingProxyType[str, str] = MappingProxyType(
    {
        "user.display_name": "Full name of the user the request is for.",
        "user.email": "E-mail address of that user.",
        "user.username": "Login name of that user.",
        "request.id": "Internal identifier of the request.",
        "request.business_key": (
            "Request number shown to people, for example REQ-2024-000123."
        ),
        "request.type_label": (
            "Human-readable request type, for example 'New hardware token'."
        ),
        "request.created": "When the request was submitted (datetime).",
        "request.updated": "When the request last changed (datetime).",
        "request.status": "Current status, for example 'pending' or 'completed'.",
        "request.token_class": "Token class: 'hardware' or 'software'.",
        "request.token_model": "Token model, for example 'SID700' or 'Android'.",
        "request.current_step": (
            "Name of the step the request is waiting at; empty once it ended."
        ),
        "approver.display_name": (
            "Full name of the approver or administrator who acted on the request."
        ),
        "comment": (
            "Comment the approver or distributor wrote for the user (never the "
            "staff-only notes)."
        ),
        "link": (
            "Address to open in the console: the task for a mail about one, "
            "the process instance's administration page for an incident, "
            "otherwise the request's page (the console's home page for a "
            "process instance started without a request)."
        ),
        "delivery.serial_number": "Serial number of the assigned token.",
        "delivery.carrier": "Carrier that ships a hardware token.",
        "delivery.tracking_number": "Carrier's tracking number for the shipment.",
        "delivery.activation_link": "Activation link of a software token.",
        "task.name": "Name of the task waiting for the recipient.",
        "task.due": "When that task is due (datetime), if it has a due date.",
        "site_name": "Name of this installation, shown in subjects and footers.",
    }
)

TEMPLATE_FILTERS: MappingProxyType[str, str] = MappingProxyType(
    {
        "datetime": "Format a datetime as '2024-05-02 14:03 UTC'.",
        "date": "Format a datetime as '2024-05-02'.",
    }
)


@dataclass(frozen=True)
class MailTemplate:
    """Jinja2 sources of one event's subject, plain text and HTML body."""

    subject: str
    text: str
    html: str


def sample_context() -> dict[str, Any]:
    """Return a realistic context that fills every documented variable.

    The admin preview renders templates with it, and
    :func:`engine.mail.validate_template` uses it for a trial render.
    """
    created = datetime(2024, 5, 2, 14, 3, tzinfo=UTC)
    return {
        "user": {
            "display_name": "Maria Lopez",
            "email": "maria.lopez@example.org",
            "username": "mlopez",
        },
        "request": {
            "id": "7f3c2a9e-5b1d-4c8e-9a6f-2d4e8b1c0a57",
            "business_key": "REQ-2024-000123",
            "type_label": "New hardware token",
            "created": created,
            "updated": datetime(2024, 5, 3, 9, 41, tzinfo=UTC),
            "status": "pending",
            "token_class": "hardware",
            "token_model": "SID700",
            "current_step": "Manager approval",
        },
        "approver": {"display_name": "Daniel Okafor"},
        "comment": "Checked with your manager on 2 May.",
        "link": "https://tokens.example.org/requests/REQ-2024-000123",
        "delivery": {
            "serial_number": "000123456789",
            "carrier": "DHL Express",
            "tracking_number": "JD014600003828319412",
            "activation_link": ("https://tokens.example.org/activate/Vb3kQ9rT2mXw8LpZ"),
        },
        "task": {
            "name": "Manager approval",
            "due": datetime(2024, 5, 6, 17, 0, tzinfo=UTC),
        },
        "site_name": "Token Provisioning",
    }


# Pieces shared by the text bodies. The signature separator is "-- " with a
# trailing space, which mail clients use to fold away the footer.
_TEXT_FOOTER = (
    "\n-- \n{{ site_name }}\n"
    "This message was sent automatically; replies to it are not read.\n"
)

_TEXT_DETAILS = """\
Request:   {{ request.business_key }}
Type:      {{ request.type_label }}
{% if request.token_model %}
Token:     {{ request.token_model }} ({{ request.token_class }})
{% endif %}
For:       {{ user.display_name }} ({{ user.username }})
Submitted: {{ request.created|datetime }}
"""

_HTML_HEAD = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body style="font-family: Arial, Helvetica, sans-serif; font-size: 15px; \
line-height: 1.5; color: #1f2933; margin: 0; padding: 24px;">
<div style="max-width: 600px; margin: 0 auto;">
"""

_HTML_FOOTER = """\
<hr style="border: none; border-top: 1px solid #d9e2ec; margin: 32px 0 12px;">
<p style="font-size: 12px; color: #627d98;">{{ site_name }}<br>
This message was sent automatically; replies to it are not read.</p>
</div>
</body>
</html>
"""

_HTML_DETAILS = """\
<table style="border-collapse: collapse; margin: 16px 0;">
<tr><td style="padding: 2px 16px 2px 0; color: #627d98;">Request</td>
<td>{{ request.business_key }}</td></tr>
<tr><td style="padding: 2px 16px 2px 0; color: #627d98;">Type</td>
<td>{{ request.type_label }}</td></tr>
{% if request.token_model %}
<tr><td style="padding: 2px 16px 2px 0; color: #627d98;">Token</td>
<td>{{ request.token_model }} ({{ request.token_class }})</td></tr>
{% endif %}
<tr><td style="padding: 2px 16px 2px 0; color: #627d98;">For</td>
<td>{{ user.display_name }} ({{ user.username }})</td></tr>
<tr><td style="padding: 2px 16px 2px 0; color: #627d98;">Submitted</td>
<td>{{ request.created|datetime }}</td></tr>
</table>
"""

_HTML_COMMENT = """\
{% if comment %}
<blockquote style="margin: 16px 0; padding: 8px 16px; \
border-left: 4px solid #9fb3c8; background: #f0f4f8;">{{ comment }}</blockquote>
{% endif %}
"""


def _html_button(label: str, url: str = "{{ link }}") -> str:
    """Return a link styled as a button, which most mail clients render."""
    return (
        f'<p style="margin: 24px 0;"><a href="{url}" style="background: #1f5fa8; '
        "color: #ffffff; padding: 10px 18px; border-radius: 4px; "
        f'text-decoration: none; display: inline-block;">{label}</a></p>\n'
        f'<p style="font-size: 12px; color: #627d98;">{url}</p>\n'
    )


def _text(body: str) -> str:
    """Join a text body with the shared footer."""
    return body + _TEXT_FOOTER


def _html(body: str) -> str:
    """Join an HTML body with the shared layout and footer."""
    return _HTML_HEAD + body + _HTML_FOOTER


_SUBMITTED = MailTemplate(
    subject=(
        "[{{ site_name }}] Request {{ request.business_key }} received: "
        "{{ request.type_label }}"
    ),
    text=_text(
        """\
Hello {{ user.display_name }},

We have received your request {{ request.business_key }}. We will write to
you again when it has been approved, rejected or completed.

"""
        + _TEXT_DETAILS
        + """\
{% if request.current_step %}
Next step: {{ request.current_step }}
{% endif %}

You can follow the request, and cancel it while it is pending, here:
{{ link }}
"""
    ),
    html=_html(
        """\
<p>Hello {{ user.display_name }},</p>
<p>We have received your request <strong>{{ request.business_key }}</strong>.
We will write to you again when it has been approved, rejected or
completed.</p>
"""
        + _HTML_DETAILS
        + """\
{% if request.current_step %}
<p>Next step: {{ request.current_step }}</p>
{% endif %}
<p>You can follow the request, and cancel it while it is pending:</p>
"""
        + _html_button("View your request")
    ),
)

_APPROVAL_NEEDED = MailTemplate(
    subject=(
        "[{{ site_name }}] Approval needed: {{ request.type_label }} for "
        "{{ user.display_name }} ({{ request.business_key }})"
    ),
    text=_text(
        """\
Hello,

{{ user.display_name }} has submitted request {{ request.business_key }}
({{ request.type_label }}). It is waiting for your approval
{%- if task %} at the step "{{ task.name }}"{% endif %}.
{% if task and task.due %}
Please decide by {{ task.due|datetime }}.
{% endif %}

"""
        + _TEXT_DETAILS
        + """\

Open the request to approve it, reject it, or save it for later:
{{ link }}

Anyone in your approver group may act on it; the first decision counts.
"""
    ),
    html=_html(
        """\
<p>Hello,</p>
<p>{{ user.display_name }} has submitted request {{ request.business_key }}
({{ request.type_label }}). It is waiting for your approval
{%- if task %} at the step <strong>{{ task.name }}</strong>{% endif %}.</p>
{% if task and task.due %}
<p>Please decide by <strong>{{ task.due|datetime }}</strong>.</p>
{% endif %}
"""
        + _HTML_DETAILS
        + _html_button("Review the request")
        + """\
<p>Anyone in your approver group may act on it; the first decision
counts.</p>
"""
    ),
)

_DISTRIBUTION_NEEDED = MailTemplate(
    subject=(
        "[{{ site_name }}] Distribution needed: "
        "{{ request.token_model or request.type_label }} for "
        "{{ user.display_name }} ({{ request.business_key }})"
    ),
    text=_text(
        """\
Hello,

Request {{ request.business_key }} of {{ user.display_name }} has been
approved and is waiting for distribution.
{% if task and task.due %}
Please distribute the token by {{ task.due|datetime }}.
{% endif %}

"""
        + _TEXT_DETAILS
        + """\

{% if request.token_class == "hardware" %}
Assign a token serial number from the inventory, then record the carrier and
tracking number once it has been shipped.
{% else %}
Assign a software token and record how its activation link reaches the user.
{% endif %}
{{ link }}
"""
    ),
    html=_html(
        """\
<p>Hello,</p>
<p>Request <strong>{{ request.business_key }}</strong> of
{{ user.display_name }} has been approved and is waiting for
distribution.</p>
{% if task and task.due %}
<p>Please distribute the token by <strong>{{ task.due|datetime }}</strong>.</p>
{% endif %}
"""
        + _HTML_DETAILS
        + """\
{% if request.token_class == "hardware" %}
<p>Assign a token serial number from the inventory, then record the carrier
and tracking number once it has been shipped.</p>
{% else %}
<p>Assign a software token and record how its activation link reaches the
user.</p>
{% endif %}
"""
        + _html_button("Distribute the token")
    ),
)

_APPROVED = MailTemplate(
    subject=(
        "[{{ site_name }}] Request {{ request.business_key }} approved: "
        "{{ request.type_label }}"
    ),
    text=_text(
        """\
Hello {{ user.display_name }},

Your request {{ request.business_key }} has been approved
{%- if approver %} by {{ approver.display_name }}{% endif %}.
{% if comment %}

Comment:
{{ comment }}
{% endif %}

{% if request.current_step %}
Next step: {{ request.current_step }}. We will write to you again when your
token is on its way.
{% else %}
We will write to you again when your token is on its way.
{% endif %}

"""
        + _TEXT_DETAILS
        + """\

{{ link }}
"""
    ),
    html=_html(
        """\
<p>Hello {{ user.display_name }},</p>
<p>Your request <strong>{{ request.business_key }}</strong> has been approved
{%- if approver %} by {{ approver.display_name }}{% endif %}.</p>
"""
        + _HTML_COMMENT
        + """\
{% if request.current_step %}
<p>Next step: {{ request.current_step }}. We will write to you again when your
token is on its way.</p>
{% else %}
<p>We will write to you again when your token is on its way.</p>
{% endif %}
"""
        + _HTML_DETAILS
        + _html_button("View your request")
    ),
)

_REJECTED = MailTemplate(
    subject=(
        "[{{ site_name }}] Request {{ request.business_key }} rejected: "
        "{{ request.type_label }}"
    ),
    text=_text(
        """\
Hello {{ user.display_name }},

We are sorry: your request {{ request.business_key }} has been rejected
{%- if approver %} by {{ approver.display_name }}{% endif %}
{%- if request.updated %} on {{ request.updated|datetime }}{% endif %}.

{% if comment %}
Reason given:
{{ comment }}
{% else %}
No reason was given. Please ask your approver if you need to know why.
{% endif %}

"""
        + _TEXT_DETAILS
        + """\

The request is closed. If you still need a token, you can submit a new
request that addresses the reason above:
{{ link }}
"""
    ),
    html=_html(
        """\
<p>Hello {{ user.display_name }},</p>
<p>We are sorry: your request <strong>{{ request.business_key }}</strong> has
been rejected
{%- if approver %} by {{ approver.display_name }}{% endif %}
{%- if request.updated %} on {{ request.updated|datetime }}{% endif %}.</p>
{% if comment %}
<p>Reason given:</p>
"""
        + _HTML_COMMENT
        + """\
{% else %}
<p>No reason was given. Please ask your approver if you need to know why.</p>
{% endif %}
"""
        + _HTML_DETAILS
        + """\
<p>The request is closed. If you still need a token, you can submit a new
request that addresses the reason above.</p>
"""
        + _html_button("View your request")
    ),
)

_CANCELLED = MailTemplate(
    subject=(
        "[{{ site_name }}] Request {{ request.business_key }} cancelled: "
        "{{ request.type_label }}"
    ),
    text=_text(
        """\
Hello {{ user.display_name }},

Your request {{ request.business_key }} has been cancelled
{%- if approver %} by {{ approver.display_name }}{% endif %}
{%- if request.updated %} on {{ request.updated|datetime }}{% endif %}.
No token will be issued for it.
{% if comment %}

Comment:
{{ comment }}
{% endif %}

"""
        + _TEXT_DETAILS
        + """\

If you still need a token, please submit a new request:
{{ link }}
"""
    ),
    html=_html(
        """\
<p>Hello {{ user.display_name }},</p>
<p>Your request <strong>{{ request.business_key }}</strong> has been cancelled
{%- if approver %} by {{ approver.display_name }}{% endif %}
{%- if request.updated %} on {{ request.updated|datetime }}{% endif %}.
No token will be issued for it.</p>
"""
        + _HTML_COMMENT
        + _HTML_DETAILS
        + """\
<p>If you still need a token, please submit a new request.</p>
"""
        + _html_button("View your request")
    ),
)

_COMPLETED = MailTemplate(
    subject=(
        "[{{ site_name }}] Request {{ request.business_key }} completed: "
        "{% if request.token_class == 'software' %}your software token is ready"
        "{% else %}your token is on its way{% endif %}"
    ),
    text=_text(
        """\
Hello {{ user.display_name }},

{% if request.token_class == "software" %}
Your request {{ request.business_key }} is complete: your software token
{%- if request.token_model %} for {{ request.token_model }}{% endif %} is
ready.

{% if delivery and delivery.activation_link %}
To activate it, open this link on the device where your authenticator app is
installed:
{{ delivery.activation_link }}

Do not forward this link: anyone who opens it first receives your token. If it
no longer works, contact your help desk and quote the request number.
{% else %}
You will receive the activation details separately.
{% endif %}
{% else %}
Your request {{ request.business_key }} is complete: your hardware token
{%- if request.token_model %} ({{ request.token_model }}){% endif %} has been
sent to you.

{% if delivery %}
{% if delivery.serial_number %}
Serial number:   {{ delivery.serial_number }}
{% endif %}
{% if delivery.carrier %}
Carrier:         {{ delivery.carrier }}
{% endif %}
{% if delivery.tracking_number %}
Tracking number: {{ delivery.tracking_number }}
{% endif %}

{% endif %}
When the token arrives, check that the serial number on its back matches, then
enable it in the self-service console:
{{ link }}
{% endif %}
{% if comment %}

Comment:
{{ comment }}
{% endif %}
"""
    ),
    html=_html(
        """\
<p>Hello {{ user.display_name }},</p>
{% if request.token_class == "software" %}
<p>Your request <strong>{{ request.business_key }}</strong> is complete: your
software token
{%- if request.token_model %} for {{ request.token_model }}{% endif %} is
ready.</p>
{% if delivery and delivery.activation_link %}
<p>To activate it, open this link on the device where your authenticator app
is installed:</p>
"""
        + _html_button("Activate your token", "{{ delivery.activation_link }}")
        + """\
<p>Do not forward this link: anyone who opens it first receives your token. If
it no longer works, contact your help desk and quote the request number.</p>
{% else %}
<p>You will receive the activation details separately.</p>
{% endif %}
{% else %}
<p>Your request <strong>{{ request.business_key }}</strong> is complete: your
hardware token
{%- if request.token_model %} ({{ request.token_model }}){% endif %} has been
sent to you.</p>
{% if delivery %}
<table style="border-collapse: collapse; margin: 16px 0;">
{% if delivery.serial_number %}
<tr><td style="padding: 2px 16px 2px 0; color: #627d98;">Serial number</td>
<td>{{ delivery.serial_number }}</td></tr>
{% endif %}
{% if delivery.carrier %}
<tr><td style="padding: 2px 16px 2px 0; color: #627d98;">Carrier</td>
<td>{{ delivery.carrier }}</td></tr>
{% endif %}
{% if delivery.tracking_number %}
<tr><td style="padding: 2px 16px 2px 0; color: #627d98;">Tracking number</td>
<td>{{ delivery.tracking_number }}</td></tr>
{% endif %}
</table>
{% endif %}
<p>When the token arrives, check that the serial number on its back matches,
then enable it in the self-service console.</p>
"""
        + _html_button("Enable your token")
        + """\
{% endif %}
"""
        + _HTML_COMMENT
    ),
)

_FAILED = MailTemplate(
    subject=(
        "[{{ site_name }}] Request {{ request.business_key }} failed: "
        "{{ request.type_label }}"
    ),
    text=_text(
        """\
Hello {{ user.display_name }},

Your request {{ request.business_key }} could not be completed
{%- if request.current_step %}: it failed at the step
"{{ request.current_step }}"{% endif %}. No token has been issued yet.
{% if comment %}

Details:
{{ comment }}
{% endif %}

Please contact your help desk and quote the request number
{{ request.business_key }}; there is no need to submit a new request.

"""
        + _TEXT_DETAILS
        + """\

{{ link }}
"""
    ),
    html=_html(
        """\
<p>Hello {{ user.display_name }},</p>
<p>Your request <strong>{{ request.business_key }}</strong> could not be
completed
{%- if request.current_step %}: it failed at the step
<strong>{{ request.current_step }}</strong>{% endif %}. No token has been
issued yet.</p>
"""
        + _HTML_COMMENT
        + """\
<p>Please contact your help desk and quote the request number
<strong>{{ request.business_key }}</strong>; there is no need to submit a new
request.</p>
"""
        + _HTML_DETAILS
        + _html_button("View your request")
    ),
)

_REMINDER = MailTemplate(
    subject=(
        "[{{ site_name }}] Reminder: {{ task.name }} for "
        "{{ user.display_name }} ({{ request.business_key }})"
    ),
    text=_text(
        """\
Hello,

This is a reminder: request {{ request.business_key }} of
{{ user.display_name }} is still waiting for you at the step
"{{ task.name }}".
{% if task.due %}
It is due by {{ task.due|datetime }}.
{% endif %}

"""
        + _TEXT_DETAILS
        + """\

Open the request to act on it:
{{ link }}
"""
    ),
    html=_html(
        """\
<p>Hello,</p>
<p>This is a reminder: request <strong>{{ request.business_key }}</strong> of
{{ user.display_name }} is still waiting for you at the step
<strong>{{ task.name }}</strong>.</p>
{% if task.due %}
<p>It is due by <strong>{{ task.due|datetime }}</strong>.</p>
{% endif %}
"""
        + _HTML_DETAILS
        + _html_button("Open the request")
    ),
)

_ESCALATION = MailTemplate(
    subject=(
        "[{{ site_name }}] Overdue: {{ task.name }} for "
        "{{ user.display_name }} ({{ request.business_key }})"
    ),
    text=_text(
        """\
Hello,

The step "{{ task.name }}" of request {{ request.business_key }} has not been
completed
{%- if task.due %} although it was due by {{ task.due|datetime }}{% endif %}.
{{ user.display_name }} is still waiting for a token.

"""
        + _TEXT_DETAILS
        + """\

You receive this message because the request was escalated to you. Please
act on the task yourself or make sure that someone in its group does:
{{ link }}
"""
    ),
    html=_html(
        """\
<p>Hello,</p>
<p>The step <strong>{{ task.name }}</strong> of request
<strong>{{ request.business_key }}</strong> has not been completed
{%- if task.due %} although it was due by
<strong>{{ task.due|datetime }}</strong>{% endif %}.
{{ user.display_name }} is still waiting for a token.</p>
"""
        + _HTML_DETAILS
        + """\
<p>You receive this message because the request was escalated to you. Please
act on the task yourself or make sure that someone in its group does.</p>
"""
        + _html_button("Open the request")
    ),
)

_EXPIRED = MailTemplate(
    subject=(
        "[{{ site_name }}] Request {{ request.business_key }} expired: "
        "{{ request.type_label }}"
    ),
    text=_text(
        """\
Hello {{ user.display_name }},

Your request {{ request.business_key }} has expired
{%- if request.updated %} on {{ request.updated|datetime }}{% endif %}
because it was not completed in time
{%- if request.current_step %} (it was waiting at the step
"{{ request.current_step }}"){% endif %}. No token will be issued for it.

If you still need a token, please submit a new request.

"""
        + _TEXT_DETAILS
        + """\

{{ link }}
"""
    ),
    html=_html(
        """\
<p>Hello {{ user.display_name }},</p>
<p>Your request <strong>{{ request.business_key }}</strong> has expired
{%- if request.updated %} on {{ request.updated|datetime }}{% endif %}
because it was not completed in time
{%- if request.current_step %} (it was waiting at the step
<strong>{{ request.current_step }}</strong>){% endif %}. No token will be
issued for it.</p>
<p>If you still need a token, please submit a new request.</p>
"""
        + _HTML_DETAILS
        + _html_button("View your request")
    ),
)

_INCIDENT = MailTemplate(
    subject=(
        "[{{ site_name }}] Incident: request {{ request.business_key }} stopped "
        "at a failed step"
    ),
    text=_text(
        """\
Hello,

Request {{ request.business_key }} of {{ user.display_name }} stopped because
a step failed. The step is retried automatically a few times, with growing
pauses; if it keeps failing, the request waits until the cause is fixed and
an administrator retries the step. You will not be told of each retry.
{% if comment %}

What failed:
{{ comment }}
{% endif %}

"""
        + _TEXT_DETAILS
        + """\

You receive this message as an administrator of the request's security
domain. Open the process instance to see the incident, retry the step or
cancel the request:
{{ link }}
"""
    ),
    html=_html(
        """\
<p>Hello,</p>
<p>Request <strong>{{ request.business_key }}</strong> of
{{ user.display_name }} stopped because a step failed. The step is retried
automatically a few times, with growing pauses; if it keeps failing, the
request waits until the cause is fixed and an administrator retries the step.
You will not be told of each retry.</p>
{% if comment %}
<p>What failed:</p>
"""
        + _HTML_COMMENT
        + """\
{% endif %}
"""
        + _HTML_DETAILS
        + """\
<p>You receive this message as an administrator of the request's security
domain. Open the process instance to see the incident, retry the step or
cancel the request.</p>
"""
        + _html_button("Open the process instance")
    ),
)

DEFAULT_TEMPLATES: MappingProxyType[str, MailTemplate] = MappingProxyType(
    {
        "submitted": _SUBMITTED,
        "approval_needed": _APPROVAL_NEEDED,
        "distribution_needed": _DISTRIBUTION_NEEDED,
        "approved": _APPROVED,
        "rejected": _REJECTED,
        "cancelled": _CANCELLED,
        "completed": _COMPLETED,
        "failed": _FAILED,
        "reminder": _REMINDER,
        "escalation": _ESCALATION,
        "expired": _EXPIRED,
        "incident": _INCIDENT,
    }
)
