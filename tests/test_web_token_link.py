"""A token administrator replaces the activation link of a software token."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from helpers_web import (
    client_as,
    post,
)

from engine.provisioning import software


@pytest.fixture
def issued(env):
    """A software token of jdoe (acme/emea/paris) whose link jdoe has used."""
    with env.database.write() as session:
        token, url = software.issue_software_token(
            session,
            owner="jdoe",
            model_code="AUTHAPP",
            request_id=None,
            settings=env.settings,
        )
    path = "/activate/" + url.rsplit("/", 1)[1]
    assert post(client_as(env, "jdoe"), path).status_code == 200
    return SimpleNamespace(serial=token.serial, used_path=path)


def text(response) -> str:
    return response.get_data(as_text=True)


def new_link(client, serial):
    return post(client, f"/admin/tokens/{serial}/new-activation-link")


@pytest.mark.parametrize("username", ["tadmin", "pnovak"])
def test_token_administrator_in_scope_gets_a_new_link_that_works(env, issued, username):
    client = client_as(env, username)
    assert "New activation link</button>" in text(
        client.get(f"/admin/tokens/{issued.serial}")
    )

    response = new_link(client, issued.serial)

    assert response.status_code == 200
    link = re.search(
        r'<code id="activation-link" class="break">([^<]+)</code>', text(response)
    )[1]
    assert link.startswith("http://127.0.0.1:5000/activate/")
    assert "Send it to Jane Doe at" in text(response)
    path = "/activate/" + link.rsplit("/", 1)[1]
    owner = client_as(env, "jdoe")
    assert owner.get(path).status_code == 200
    assert "otpauth://totp/" in text(post(owner, path))


def test_new_link_is_recorded_in_the_token_history(env, issued):
    client = client_as(env, "tadmin")
    new_link(client, issued.serial)

    history = text(client.get(f"/admin/tokens/{issued.serial}"))

    assert "New activation link</p>" in history


def test_hardware_token_gets_no_new_link_and_the_engine_says_why(env):
    client = client_as(env, "tadmin")
    assert "New activation link</button>" not in text(
        client.get("/admin/tokens/100001")
    )

    response = new_link(client, "100001")

    assert response.status_code == 409
    assert (
        "only an assigned software token that is not enabled yet gets a new "
        "activation link." in text(response)
    )


@pytest.mark.parametrize(
    ("username", "status"), [("jdoe", 403), ("lrossi", 403), ("dwilson", 403)]
)
def test_new_link_is_refused_without_the_token_administrator_role(
    env, issued, username, status
):
    response = new_link(client_as(env, username), issued.serial)

    assert response.status_code == status
    assert "activate/" not in text(response)


def test_new_link_is_refused_outside_the_token_administrators_scope(env):
    with env.database.write() as session:
        token, _ = software.issue_software_token(
            session,
            owner="ebrown",
            model_code="AUTHAPP",
            request_id=None,
            settings=env.settings,
        )
    response = new_link(client_as(env, "pnovak"), token.serial)

    assert response.status_code == 404
    assert "/activate/" not in text(response)


def test_new_link_without_csrf_token_is_refused(env, issued):
    client = client_as(env, "tadmin")

    response = client.post(f"/admin/tokens/{issued.serial}/new-activation-link")

    assert response.status_code == 400
    assert "without a valid security token" in text(response)
