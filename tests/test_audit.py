"""The audit trail: one row per administrative change, shown to administrators.

Each change made through the engine leaves exactly one ``AuditEvent`` with
who, what, on which subject and in which security domain, and never a
password or secret; a change that fails leaves none. The console's audit
log merges these rows with the request history and deployments, within the
administrator's scope, and the activity report counts them per person.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from helpers_inventory import PASSWORD, actor, add_token, seed
from helpers_web import (
    client_as,
    post,
)
from sqlalchemy import select

from engine import api_tokens
from engine.errors import ValidationFailed
from engine.identity import actor_for
from engine.mail import SmtpSettings
from engine.models import AuditEvent, utcnow
from engine.notifications import smtp, templates
from engine.provisioning import directory, inventory
from engine.provisioning import requests as provisioning
from engine.provisioning.inventory_models import TokenState

SMTP_PASSWORD = "smtp-secret-1234"
NEW_PASSWORD = "a brand new secret"


def events_since(database, first_id: int) -> list[tuple]:
    """Return (actor, action, subject, domain_path, message) of the new events."""
    with database.read() as session:
        return [
            (e.actor, e.action, e.subject, e.domain_path, e.message)
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.id > first_id).order_by("id")
            )
        ]


def last_event_id(database) -> int:
    with database.read() as session:
        return session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc())) or 0


@pytest.fixture
def seeded(database):
    with database.write() as session:
        seed(session)
    return database


# -- the engine writes one row per change ------------------------------------


def test_seeding_records_each_domain_user_and_grant_as_the_system(seeded):
    with seeded.read() as session:
        rows = session.execute(
            select(AuditEvent.actor, AuditEvent.action, AuditEvent.subject).where(
                AuditEvent.subject.in_(["domain acme/emea", "user emea_admin"])
            )
        ).all()

    assert sorted(rows) == [
        ("system", "domain_created", "domain acme/emea"),
        ("system", "role_granted", "user emea_admin"),
        ("system", "user_created", "user emea_admin"),
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda s: directory.create_domain(
                s, "acme/emea/lyon", "Lyon", actor="root"
            ),
            (
                "root",
                "domain_created",
                "domain acme/emea/lyon",
                "acme/emea/lyon",
                "Created security domain acme/emea/lyon (Lyon)",
            ),
        ),
        (
            lambda s: directory.create_user(
                s,
                username="newbie",
                display_name="New Bie",
                email="newbie@acme.example",
                domain_path="acme/emea",
                password=NEW_PASSWORD,
                actor="root",
            ),
            (
                "root",
                "user_created",
                "user newbie",
                "acme/emea",
                "Created user newbie (New Bie, newbie@acme.example) in acme/emea, "
                "with a password",
            ),
        ),
        (
            lambda s: directory.grant_role(
                s, "jdoe", "request_approver", "acme/emea", actor="root"
            ),
            (
                "root",
                "role_granted",
                "user jdoe",
                "acme/emea/paris",
                "Granted request_approver in acme/emea to jdoe",
            ),
        ),
        (
            lambda s: directory.revoke_role(
                s, "emea_admin", "token_administrator", "acme/emea", actor="root"
            ),
            (
                "root",
                "role_revoked",
                "user emea_admin",
                "acme/emea",
                "Revoked token_administrator in acme/emea from emea_admin",
            ),
        ),
        (
            lambda s: directory.set_password(s, "jdoe", NEW_PASSWORD, actor="root"),
            (
                "root",
                "password_set",
                "user jdoe",
                "acme/emea/paris",
                "Set the password of jdoe",
            ),
        ),
        (
            lambda s: directory.set_active(s, "ebrown", False, actor="root"),
            (
                "root",
                "user_disabled",
                "user ebrown",
                "acme/americas",
                "The account of ebrown is disabled",
            ),
        ),
    ],
    ids=["domain", "user", "grant", "revoke", "password", "deactivate"],
)
def test_each_directory_change_leaves_one_event(seeded, change, expected):
    first = last_event_id(seeded)

    with seeded.write() as session:
        change(session)

    assert events_since(seeded, first) == [expected]
    assert NEW_PASSWORD not in repr(events_since(seeded, first))


def test_repeating_a_grant_or_the_account_state_records_nothing(seeded):
    first = last_event_id(seeded)

    with seeded.write() as session:
        directory.grant_role(
            session, "emea_admin", "token_administrator", "acme/emea", actor="root"
        )
        directory.set_active(session, "jdoe", True, actor="root")

    assert events_since(seeded, first) == []


def test_creating_a_user_with_roles_records_the_user_then_each_grant(seeded):
    first = last_event_id(seeded)

    with seeded.write() as session:
        directory.create_user(
            session,
            username="newbie",
            display_name="New Bie",
            email="newbie@acme.example",
            domain_path="acme/emea",
            roles=["request_approver", ("token_distributor", "acme/emea/paris")],
            actor="root",
        )

    assert [(a, act, subj) for a, act, subj, _, _ in events_since(seeded, first)] == [
        ("root", "user_created", "user newbie"),
        ("root", "role_granted", "user newbie"),
        ("root", "role_granted", "user newbie"),
    ]


def test_a_failed_change_leaves_no_event(seeded):
    first = last_event_id(seeded)

    with pytest.raises(ValidationFailed), seeded.write() as session:
        directory.create_user(
            session,
            username="newbie",
            display_name="New Bie",
            email="newbie@acme.example",
            domain_path="acme/nowhere",
            actor="root",
        )

    assert events_since(seeded, first) == []


def test_the_event_rolls_back_with_its_transaction(seeded):
    first = last_event_id(seeded)

    with pytest.raises(ValidationFailed), seeded.write() as session:
        directory.grant_role(session, "jdoe", "request_approver", "acme", actor="root")
        directory.set_password(session, "jdoe", "tiny", actor="root")

    assert events_since(seeded, first) == []


def test_a_token_import_leaves_one_event_with_the_count(seeded):
    first = last_event_id(seeded)
    data = "serial,model,expiry\nA-1,SID700,2099-01-01\nA-2,SID700,2099-01-01\n"

    with seeded.write() as session:
        inventory.import_tokens_csv(
            session, actor(session, "emea_admin"), data, domain_path="acme/emea"
        )

    assert events_since(seeded, first) == [
        (
            "emea_admin",
            "tokens_imported",
            "inventory acme/emea",
            "acme/emea",
            "Imported 2 tokens into 'acme/emea'",
        )
    ]


def test_a_refused_token_import_leaves_no_event(seeded):
    first = last_event_id(seeded)

    with pytest.raises(inventory.ImportRefused), seeded.write() as session:
        inventory.import_tokens_csv(
            session,
            actor(session, "emea_admin"),
            "serial,model,expiry\nA-1,NOPE,2099-01-01\n",
            domain_path="acme/emea",
        )

    assert events_since(seeded, first) == []


def test_token_administrator_acts_leave_one_event_each(seeded):
    with seeded.write() as session:
        add_token(session, "E-1", state=TokenState.ACTIVE, owner="jdoe")
        add_token(session, "E-2", state=TokenState.ASSIGNED, owner="jdoe")
        add_token(session, "E-3", state=TokenState.ACTIVE, owner="jdoe")
    first = last_event_id(seeded)

    with seeded.write() as session:
        admin = actor(session, "emea_admin")
        inventory.disable_token(session, admin, "E-1", reason="Left the company")
        inventory.unassign_token(session, admin, "E-2")
        inventory.mark_lost(session, admin, "E-3")

    assert events_since(seeded, first) == [
        (
            "emea_admin",
            "token_disabled",
            "token E-1",
            "acme/emea",
            "Left the company (now disabled)",
        ),
        (
            "emea_admin",
            "token_unassigned",
            "token E-2",
            "acme/emea",
            "Unassigned from jdoe (now available)",
        ),
        (
            "emea_admin",
            "token_marked_lost",
            "token E-3",
            "acme/emea",
            "Reported lost (now lost)",
        ),
    ]


def test_an_owner_reporting_their_token_lost_is_told_apart(seeded):
    with seeded.write() as session:
        add_token(session, "E-1", state=TokenState.ACTIVE, owner="jdoe")
    first = last_event_id(seeded)

    with seeded.write() as session:
        inventory.mark_lost(session, actor(session, "jdoe"), "E-1")

    assert [e[:3] for e in events_since(seeded, first)] == [
        ("jdoe", "token_reported_lost", "token E-1")
    ]


def test_smtp_settings_are_recorded_without_the_password(seeded, settings):
    first = last_event_id(seeded)
    server = SmtpSettings(
        host="smtp.acme.example",
        port=587,
        security="starttls",
        username="mailer",
        password=SMTP_PASSWORD,
        sender="Provisioning <provisioning@acme.example>",
    )

    with seeded.write() as session:
        smtp.save_smtp_settings(session, settings, server, actor="root")
    with seeded.write() as session:
        smtp.clear_smtp_settings(session, actor="root")

    with seeded.read() as session:
        stored = session.scalars(select(AuditEvent).where(AuditEvent.id > first)).all()
        assert all(
            SMTP_PASSWORD not in f"{e.message} {e.data} {e.subject}" for e in stored
        )
    assert events_since(seeded, first) == [
        (
            "root",
            "smtp_settings_saved",
            "smtp settings",
            None,
            "Saved SMTP server smtp.acme.example:587 (starttls, login mailer), "
            "sender Provisioning <provisioning@acme.example>",
        ),
        (
            "root",
            "smtp_settings_cleared",
            "smtp settings",
            None,
            "Removed the stored SMTP settings; the environment's apply",
        ),
    ]


def test_email_template_save_and_reset_leave_one_event_each(seeded):
    first = last_event_id(seeded)

    with seeded.write() as session:
        templates.save_template_override(
            session,
            event="approved",
            request_type="new_token",
            sources={"subject": "Approved: {{ request.id }}"},
            actor="root",
        )
    with seeded.write() as session:
        templates.delete_template_override(
            session, event="approved", request_type="new_token", actor="root"
        )

    assert events_since(seeded, first) == [
        (
            "root",
            "mail_template_saved",
            "e-mail template approved",
            None,
            "Saved the approved template for new_token (changed: subject)",
        ),
        (
            "root",
            "mail_template_reset",
            "e-mail template approved",
            None,
            "Reset the approved template for new_token to the default",
        ),
    ]


def test_api_token_create_and_revoke_are_recorded_without_the_secret(seeded):
    first = last_event_id(seeded)
    expires_at = utcnow().replace(microsecond=0) + timedelta(days=30)

    with seeded.write() as session:
        token, secret = api_tokens.create_token(
            session, "jdoe", name="backup script", expires_at=expires_at, actor="jdoe"
        )
        token_id = token.id
    with seeded.write() as session:
        api_tokens.revoke_token(session, actor(session, "root"), token_id)

    events = events_since(seeded, first)
    assert events == [
        (
            "jdoe",
            "api_token_created",
            f"api token {token_id}",
            "acme/emea/paris",
            f"Created API token {token_id} 'backup script' for jdoe (all roles, "
            f"expires {expires_at.isoformat(timespec='minutes')})",
        ),
        (
            "root",
            "api_token_revoked",
            f"api token {token_id}",
            "acme/emea/paris",
            f"Revoked API token {token_id} 'backup script' of jdoe",
        ),
    ]
    assert secret not in repr(events)
    assert secret[: api_tokens.SHOWN_CHARS] not in repr(events)


# -- the console ----------------------------------------------------------------


def audit_csv(client, query: str) -> list[str]:
    response = client.get(f"/admin/audit?format=csv&{query}")
    assert response.mimetype == "text/csv"
    return response.get_data(as_text=True).strip().splitlines()


def test_audit_log_shows_a_role_grant_by_tadmin_to_an_administrator(env):
    with env.database.write() as session:
        directory.grant_role(
            session, "tmuller", "token_distributor", "acme/emea", actor="tadmin"
        )
    client = client_as(env, "admin")

    page = client.get("/admin/audit?actor=tadmin").get_data(as_text=True)
    lines = audit_csv(client, "actor=tadmin")

    assert "No entry matches" not in page
    assert "Granted token_distributor in acme/emea to tmuller" in page
    assert lines[0] == "at,actor,action,subject,message"
    assert [line.split(",", 1)[1] for line in lines[1:]] == [
        "tadmin,role_granted,user tmuller,Granted token_distributor in acme/emea "
        "to tmuller"
    ]


def test_audit_log_filters_by_action(env):
    client = client_as(env, "admin")
    post(client, "/admin/users/tmuller/password", {"password": NEW_PASSWORD})

    lines = audit_csv(client, "action=password_set")

    assert [line.split(",", 1)[1] for line in lines[1:]] == [
        "admin,password_set,user tmuller,Set the password of tmuller"
    ]
    assert NEW_PASSWORD not in "\n".join(audit_csv(client, ""))


def test_console_changes_land_in_the_audit_log_as_their_administrator(env):
    client = client_as(env, "admin")
    post(client, "/admin/users/tmuller/active", {"active": "0"})
    post(client, "/admin/domains", {"path": "acme/emea/lyon", "name": "Lyon"})

    lines = audit_csv(client, "actor=admin")

    assert [line.split(",", 1)[1] for line in lines[1:]] == [
        "admin,domain_created,domain acme/emea/lyon,"
        "Created security domain acme/emea/lyon (Lyon)",
        "admin,user_disabled,user tmuller,The account of tmuller is disabled",
    ]


def test_a_sub_domain_administrator_sees_only_their_branch(env):
    with env.database.write() as session:
        directory.grant_role(
            session, "aschmidt", "administrator", "acme/emea", actor="admin"
        )
        directory.grant_role(
            session, "tmuller", "request_approver", "acme/emea", actor="tadmin"
        )
        directory.grant_role(
            session, "ebrown", "request_approver", "acme/americas", actor="tadmin"
        )
        smtp.save_smtp_settings(
            session, env.settings, SmtpSettings(host="smtp.acme.example"), actor="admin"
        )
    emea = client_as(env, "aschmidt")
    top = client_as(env, "admin")

    emea_lines = audit_csv(emea, "actor=tadmin")
    emea_settings = audit_csv(emea, "action=smtp_settings_saved")
    top_settings = audit_csv(top, "action=smtp_settings_saved")

    assert [line.split(",")[3] for line in emea_lines[1:]] == ["user tmuller"]
    assert emea_settings == ["at,actor,action,subject,message"]
    assert [line.split(",")[1:4] for line in top_settings[1:]] == [
        ["admin", "smtp_settings_saved", "smtp settings"]
    ]


def activity_rows(client) -> dict[str, int]:
    """Return each person's total from the activity report's CSV."""
    response = client.get("/admin/reports?report=activity&format=csv")
    totals: dict[str, int] = {}
    for line in response.get_data(as_text=True).strip().splitlines()[1:]:
        who, _, count = line.rsplit(",", 2)
        totals[who] = totals.get(who, 0) + int(count)
    return totals


def test_activity_report_leaves_out_a_requester_cancelling_their_own_request(env):
    with env.database.write() as session:
        created = provisioning.submit_request(
            session,
            actor=actor_for(session, "rlopez"),
            request_type="new_token",
            form={
                "token_class": "hardware",
                "token_model": "SID700",
                "shipping_address": "1 Main Street, Boston",
                "justification": "New in the Boston office.",
            },
            settings=env.settings,
        )
        request_id = created.id
    requester = client_as(env, "rlopez")
    cancelled = post(requester, f"/requests/{request_id}/cancel", {"reason": "No"})
    assert cancelled.status_code == 302

    totals = activity_rows(client_as(env, "admin"))

    assert "rlopez" not in totals


def test_activity_report_counts_administration_per_person(env):
    with env.database.write() as session:
        directory.grant_role(
            session, "tmuller", "token_distributor", "acme/emea", actor="tadmin"
        )
        inventory.disable_token(
            session, actor_for(session, "tadmin"), "100001", reason="Broken"
        )
    client = client_as(env, "admin")

    response = client.get("/admin/reports?report=activity&format=csv")
    tadmin = [
        line
        for line in response.get_data(as_text=True).splitlines()
        if line.startswith("tadmin,")
    ]
    page = client.get("/admin/reports").get_data(as_text=True)

    assert tadmin == ["tadmin,role_granted,1", "tadmin,token_disabled,1"]
    assert re.search(r"<th scope=\"col\">Token disabled</th>", page)


def test_password_of_the_seeded_users_is_never_in_the_audit_trail(seeded):
    with seeded.read() as session:
        messages = session.scalars(select(AuditEvent.message)).all()

    assert messages
    assert not [m for m in messages if PASSWORD in m]
