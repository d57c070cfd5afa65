"""No way around the policy: a request starts only with its request, and
only an administrator in scope retries its failed step.

``provisioning start``, the Camunda REST API and a direct call of
:func:`engine.instances.start_instance` all meet the start guard that the
provisioning layer registers for its request types; ``provisioning retry``
and :func:`engine.instances.retry_incident` check who retries.
"""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner
from helpers_api import Api, make_app
from helpers_provisioning import Org, make_org
from sqlalchemy import func, select

from engine import instances
from engine.cli import main
from engine.errors import PermissionDenied
from engine.identity import actor_for
from engine.models import HistoryEntry, ProcessInstance
from engine.provisioning import requests
from engine.provisioning.inventory_models import Token, TokenModel
from engine.provisioning.request_models import ProvisioningRequest


@pytest.fixture
def org(database, settings) -> Org:
    return make_org(database, settings)


@pytest.fixture
def cli(org, tmp_path):
    """Run a command against the organisation's database; return the Result."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    env = {
        "DATABASE_URL": org.database.url.render_as_string(hide_password=False),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "LOG_LEVEL": "WARNING",
    }

    def run(*args: str):
        return CliRunner().invoke(main, list(args), env=env)

    yield run
    # The CLI configures logging for a process; give pytest its handlers back.
    root.handlers[:] = handlers
    root.setLevel(level)


def refusal(key: str, label: str, user: str = "jdoe") -> str:
    return (
        f"Process '{key}' runs '{label}' requests and starts only when such a "
        "request is submitted, so that its form is checked and its approval steps "
        "apply; nothing was started. Start it with `provisioning requests submit "
        f"{key} --user {user} --field NAME=VALUE ...` or the console's New request "
        "page."
    )


def written(org: Org) -> tuple[int, int, int]:
    """Return how many instances, requests and history entries are stored."""
    with org.database.read() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (ProcessInstance, ProvisioningRequest, HistoryEntry)
        )


def test_cli_start_of_a_request_process_is_refused(org, cli):
    variables = {
        "request_type": "replace_expiring_token",
        "token_class": "hardware",
        "token_model": "SID700",
        "requester": "jdoe",
        "security_domain": "acme/emea/paris",
        "shipping_address": "1 Rue de la Paix, 75002 Paris",
    }

    result = cli(
        "start", "new_token", "--user", "jdoe", "--variables", json.dumps(variables)
    )

    assert result.exit_code == 1
    assert result.output == (
        f"Error: {refusal('new_token', 'New or additional token')}\n"
    )
    assert written(org) == (0, 0, 0)
    assert org.inbox("lucia") == []


@pytest.mark.parametrize("key", list(requests.REQUEST_TYPES))
def test_every_request_type_is_guarded(org, key):
    before = written(org)

    with org.database.write() as session, pytest.raises(PermissionDenied) as err:
        instances.start_instance(
            session, key, actor=actor_for(session, "admin"), variables={}
        )

    assert str(err.value) == refusal(
        key, requests.REQUEST_TYPES[key].label, user="admin"
    )
    assert written(org) == before


def test_the_request_id_of_a_submitted_request_does_not_open_the_guard(org):
    request_id = org.new_hardware("jdoe")
    before = written(org)

    for by in ("jdoe", "lucia"):
        with org.database.write() as session, pytest.raises(PermissionDenied) as err:
            instances.start_instance(
                session,
                "new_token",
                actor=actor_for(session, by),
                variables={"request_id": request_id, "token_class": "hardware"},
            )
        assert str(err.value) == refusal("new_token", "New or additional token", by)

    assert written(org) == before


def test_camunda_rest_start_of_a_request_process_is_refused(org):
    app = make_app(org.database, org.settings)
    api = Api(org, app, app.test_client())
    before = written(org)

    response = api.client.post(
        "/engine-rest/process-definition/key/new_token/start",
        json={"variables": {"token_class": {"value": "hardware", "type": "String"}}},
        headers=api.headers("admin"),
    )

    assert response.status_code == 403
    assert response.get_json()["message"] == refusal(
        "new_token", "New or additional token", "admin"
    )
    assert written(org) == before


def test_a_submitted_request_still_starts_and_ships(org):
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id)
    org.decide("marc", request_id)

    org.distribute("lucia", request_id, serial_number="E-700-2", carrier="dhl")

    assert org.request(request_id).status == "completed"
    with org.database.read() as session:
        token = session.scalars(select(Token).where(Token.serial == "E-700-2")).one()
        assert (token.owner, token.request_id) == ("jdoe", request_id)


def retired_profile_incident(org: Org) -> tuple[int, int]:
    """Return a software request and its instance, stopped in an incident."""
    request_id = org.new_software("jdoe")
    org.decide("anna", request_id)
    set_profile_active(org, False)
    org.distribute("lucia", request_id, delivery_method="qr_in_person")
    request = org.request(request_id)
    assert request.status == "pending"
    return request_id, request.instance_id


def set_profile_active(org: Org, active: bool) -> None:
    with org.database.write() as session:
        model = session.scalars(select(TokenModel).where(TokenModel.code == "APP"))
        model.one().active = active


@pytest.mark.parametrize("user", ["jdoe", "lucia", "anna"])
def test_cli_retry_is_refused_to_anyone_but_an_administrator(org, cli, user):
    request_id, instance_id = retired_profile_incident(org)
    set_profile_active(org, True)
    before = written(org)

    result = cli("retry", str(instance_id), "--user", user)

    assert result.exit_code == 1
    assert result.output == (
        f"Error: You may not retry the failed step of request-{request_id}; only "
        "an administrator of security domain 'acme/emea/paris' can, once the "
        "cause is fixed. Nothing was changed.\n"
    )
    assert written(org) == before
    assert org.request(request_id).current_step == "Issue software token (failed)"
    with org.database.read() as session:
        owned = session.scalars(select(Token.serial).where(Token.owner == "jdoe"))
        assert sorted(owned) == ["J-LATER", "J-SOON"]


def test_cli_retry_by_an_administrator_of_the_domain_runs_the_step(org, cli):
    request_id, instance_id = retired_profile_incident(org)
    set_profile_active(org, True)

    result = cli("retry", str(instance_id), "--user", "emma")

    assert result.exit_code == 0, result.output
    assert result.output == f"Retried instance {instance_id}: completed.\n"
    request = org.request(request_id)
    assert request.status == "completed"
    assert request.outcome.startswith("Software token SW")
