"""Small forms beside a page's main content answer next to their field."""

from __future__ import annotations

import re

import pytest
from helpers_web import post, sign_in
from markupsafe import escape

from engine.identity import actor_for
from engine.provisioning import directory


def admin_client(env):
    client = env.app.test_client()
    sign_in(client, env.database, "admin")
    return client


def field_errors(response, field_id: str) -> list[str]:
    return re.findall(
        rf'<p class="error" id="{field_id}-err">([^<]*)</p>',
        response.get_data(as_text=True),
    )


def test_too_short_password_is_shown_once_next_to_the_field(env):
    response = post(
        admin_client(env), "/admin/users/jdoe/password", {"password": "short-pw"}
    )

    assert response.status_code == 422
    assert field_errors(response, "password") == ["Use at least 12 characters."]
    # Once as the hint, once as the error: no second copy of the message.
    assert response.get_data(as_text=True).count("12 characters") == 2
    assert "Error 422" not in response.get_data(as_text=True)


def test_long_enough_password_is_set(env):
    response = post(
        admin_client(env), "/admin/users/jdoe/password", {"password": "a" * 12}
    )

    assert response.status_code == 302
    with env.database.read() as session:
        assert directory.authenticate(session, "jdoe", "a" * 12) is not None


def test_password_form_says_the_minimum_before_submitting(env):
    page = admin_client(env).get("/admin/users/jdoe").get_data(as_text=True)

    assert 'id="password-hint">At least 12 characters.</p>' in page
    assert 'minlength="12"' in page


@pytest.mark.parametrize("path", ["Bad Path!", "acme/Emea", "acme//x", "acme/ x"])
def test_malformed_domain_path_is_a_format_error_not_a_scope_refusal(env, path):
    response = post(admin_client(env), "/admin/domains", {"path": path})

    assert response.status_code == 422
    assert field_errors(response, "path") == [
        escape(
            "Write the path in lower-case letters, digits, '-' and '_', in "
            "segments joined by '/', such as acme/emea/paris."
        )
    ]


def test_well_formed_domain_outside_the_scope_is_still_refused(env):
    with env.database.write() as session:
        directory.create_user(
            session,
            username="emeaadmin",
            display_name="EMEA Admin",
            email="emeaadmin@example.com",
            domain_path="acme/emea",
            actor="setup",
        )
        directory.grant_role(
            session, "emeaadmin", "administrator", "acme/emea", actor="setup"
        )
        assert actor_for(session, "emeaadmin").has_role("administrator", "acme/emea")
    client = env.app.test_client()
    sign_in(client, env.database, "emeaadmin")

    response = post(client, "/admin/domains", {"path": "acme/americas/x"})

    assert response.status_code == 403
    assert escape(
        "You may not create security domains in security domain 'acme/americas': "
        "your administrator role does not cover it."
    ) in response.get_data(as_text=True)
