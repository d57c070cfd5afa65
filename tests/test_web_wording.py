"""What the console says: messages, ages, columns and offers that fit."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from helpers_web import (
    client_as,
    open_task_id,
    post,
)

from engine.identity import actor_for
from engine.models import HumanTask
from engine.provisioning import inventory
from engine.provisioning import requests as provisioning


def text(response) -> str:
    return response.get_data(as_text=True)


def submit(env) -> int:
    with env.database.write() as session:
        return provisioning.submit_request(
            session,
            actor=actor_for(session, "jdoe"),
            request_type="new_token",
            form={
                "token_class": "hardware",
                "token_model": "SID700",
                "shipping_address": "1 Rue de la Paix, Paris",
                "justification": "New in the Paris office.",
            },
            settings=env.settings,
        ).id


def test_granting_a_role_names_the_person_and_the_role_in_words(env):
    client = client_as(env, "admin")

    granted = post(
        client,
        "/admin/users/jdoe/grants",
        {"role": "request_approver", "domain_path": "acme/emea/paris"},
        follow_redirects=True,
    )
    revoked = post(
        client,
        "/admin/users/jdoe/grants/revoke",
        {"role": "request_approver", "domain_path": "acme/emea/paris"},
        follow_redirects=True,
    )

    assert (
        "Jane Doe (jdoe) now holds the request approver role in acme/emea/paris."
        in text(granted)
    )
    assert (
        "Jane Doe (jdoe) no longer holds the request approver role in "
        "acme/emea/paris." in text(revoked)
    )


def test_inbox_and_task_say_how_long_a_task_has_waited_without_ago(env):
    request_id = submit(env)
    client = client_as(env, "hbernard")

    inbox = text(client.get("/inbox"))
    task = text(client.get(f"/tasks/{open_task_id(env.database, request_id)}"))

    assert re.search(
        r'<td data-label="Waiting" title="Since [^"]+">under a minute<', inbox
    )
    assert "minute ago" not in inbox
    assert ">Waiting for under a minute</span>" in task


def test_inbox_shows_a_due_column_only_when_a_task_has_a_due_date(env):
    request_id = submit(env)
    client = client_as(env, "hbernard")
    assert '<th scope="col">Due</th>' not in text(client.get("/inbox"))

    with env.database.write() as session:
        task = session.get(HumanTask, open_task_id(env.database, request_id))
        task.due_at = datetime.now(UTC) + timedelta(days=3, hours=1)
    inbox = text(client.get("/inbox"))

    assert '<th scope="col">Due</th>' in inbox
    assert re.search(
        r'<td data-label="Due"><span class="" title="[^"]+">in 3 days<', inbox
    )


def test_unknown_page_says_what_was_not_found_once(env):
    response = client_as(env, "jdoe").get("/no/such/page")
    body = text(response)

    assert response.status_code == 404
    assert '<p class="lead">There is no page at /no/such/page.</p>' in body
    assert body.count("Not found") == 2  # the window title and the heading


def set_expiry(env, serial, days_from_now):
    with env.database.write() as session:
        token = inventory.find_token(session, serial)
        token.expires_on = datetime.now(UTC).date() + timedelta(days=days_from_now)
        return token.expires_on


def test_replacement_of_an_expiring_token_is_offered_inside_the_window(env):
    set_expiry(env, "100101", 10)

    page = text(client_as(env, "jdoe").get("/tokens"))

    assert "Replace before it expires" in page
    assert "You can ask for its replacement from" not in page


def test_replacement_far_from_expiry_says_when_it_becomes_possible(env):
    expires = set_expiry(env, "100101", 800)
    allowed = expires - timedelta(days=env.settings.expiry_replacement_days)

    page = text(client_as(env, "jdoe").get("/tokens"))

    assert "Replace before it expires" not in page
    assert (
        f"You can ask for its replacement from {allowed.isoformat()}, "
        f"{env.settings.expiry_replacement_days} days before it expires." in page
    )
