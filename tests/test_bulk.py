"""Bulk requests from a CSV file, through the engine function and the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers_provisioning import Org, make_org
from sqlalchemy import select

from engine.errors import PermissionDenied, ValidationFailed
from engine.provisioning import bulk
from engine.provisioning.request_models import ProvisioningRequest
from engine.provisioning.requests_cli import requests_group


@pytest.fixture
def org(database, settings) -> Org:
    return make_org(database, settings)


GOOD_AND_BAD = (
    "username,domain,token_type,token_model\n"
    "jdoe,acme/emea/paris,hardware,SID700\n"
    "claire,acme/emea,software,\n"
    "nobody,acme/emea,software,\n"
    "claire,acme/emea/paris,software,\n"
    "emily,acme/americas,hardware,SID700\n"
    "anna,acme/emea,usb,\n"
    "marc,acme/emea,hardware,\n"
    "\n"
    "jdoe,acme/emea/paris,software,APP\n"
    "jdoe,acme/emea/paris,hardware,SID800\n"
)


def test_bulk_file_submits_good_lines_and_reports_bad_ones(org):
    seen = []

    report = bulk.submit_csv(
        org.database, org["emma"], GOOD_AND_BAD, org.settings, on_row=seen.append
    )

    with org.database.read() as session:
        stored = {
            r.id: (r.requester, r.token_class, r.token_model, r.details["submitted_by"])
            for r in session.scalars(select(ProvisioningRequest))
        }
    first, second, third = report.submitted
    assert [str(r) for r in report.rows] == [
        f"line 2 (jdoe): request {first.request_id} submitted (hardware token SID700)",
        "line 3 (claire): claire is in security domain 'acme/emea/paris', not "
        "'acme/emea'; correct the domain column.",
        "line 4 (nobody): No active user named 'nobody'; check the spelling or "
        "create the user first.",
        f"line 5 (claire): request {second.request_id} submitted (software token APP)",
        "line 6 (emily): You are not an administrator of security domain "
        "'acme/americas', so you may not submit requests for emily.",
        "line 7 (anna): token_type 'usb' is unknown; write hardware or software.",
        "line 8 (marc): token_model is empty and there are several hardware models "
        "(SID700, SID800); name one.",
        f"line 10 (jdoe): request {third.request_id} submitted (software token APP)",
        f"line 11 (jdoe): Request {first.request_id} (New or additional token) for "
        "a hardware token of jdoe is still pending; follow that request, or cancel "
        "it, before asking again.",
    ]
    assert seen == report.rows
    assert stored == {
        first.request_id: ("jdoe", "hardware", "SID700", "emma"),
        second.request_id: ("claire", "software", "APP", "emma"),
        third.request_id: ("jdoe", "software", "APP", "emma"),
    }


def test_bulk_requests_belong_to_the_user_for_separation_of_duties(org):
    report = bulk.submit_csv(
        org.database,
        org["admin"],
        "username,domain,token_type\nanna,acme/emea,software\n",
        org.settings,
    )
    (row,) = report.submitted

    assert org.task(row.request_id) not in org.inbox("anna")
    with pytest.raises(PermissionDenied):
        org.decide("anna", row.request_id)
    org.decide("marc", row.request_id)
    org.distribute("lucia", row.request_id)
    assert org.request(row.request_id).status == "completed"


def test_bulk_hardware_request_without_address_leaves_it_to_the_distributor(org):
    report = bulk.submit_csv(
        org.database,
        org["admin"],
        "username,domain,token_type,token_model,shipping_address\n"
        "jdoe,acme/emea/paris,hardware,SID800,\n",
        org.settings,
    )
    (row,) = report.submitted
    org.decide("anna", row.request_id)
    org.decide("marc", row.request_id)

    with pytest.raises(ValidationFailed) as failed:
        org.distribute("lucia", row.request_id, serial_number="E-800-2", carrier="dhl")
    assert failed.value.field_errors == {
        "shipping_address": "Shipping address is required."
    }
    org.distribute(
        "lucia",
        row.request_id,
        serial_number="E-800-2",
        carrier="dhl",
        shipping_address="Rue du Bac 3, Paris",
    )
    assert org.request(row.request_id).status == "completed"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            "",
            "The file is empty; its first line must be the header "
            "username,domain,token_type.",
        ),
        (
            "user,domain,type\njdoe,acme,hardware\n",
            "The header 'user,domain,type' is wrong (missing username, token_type; "
            "unknown user, type); it must be username,domain,token_type, optionally "
            "followed by token_model and shipping_address.",
        ),
        (
            b"username,domain,token_type\n\xff\xfe,acme,hardware\n",
            "The file is not UTF-8 text (byte 27 cannot be read); save it as CSV "
            "UTF-8 and try again.",
        ),
    ],
)
def test_unreadable_bulk_file_is_refused_whole(org, data, message):
    with pytest.raises(ValidationFailed) as failed:
        bulk.submit_csv(org.database, org["admin"], data, org.settings)

    assert str(failed.value) == message
    with org.database.read() as session:
        assert session.scalars(select(ProvisioningRequest)).all() == []


def test_bulk_command_shows_progress_and_a_report(org, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", org.database.url.render_as_string(False))
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", org.settings.token_encryption_key)
    path = tmp_path / "bulk.csv"
    path.write_text(
        "username,domain,token_type,token_model\n"
        "jdoe,acme/emea/paris,software,APP\n"
        "claire,acme/emea/paris,usb,\n"
    )

    result = CliRunner().invoke(
        requests_group, ["bulk", str(path), "--user", "admin", "--json"]
    )

    assert result.exit_code == 1, result.output
    rows = json.loads(result.stdout)
    assert [(r["line"], r["ok"], r["message"]) for r in rows] == [
        (2, True, f"request {rows[0]['request_id']} submitted (software token APP)"),
        (3, False, "token_type 'usb' is unknown; write hardware or software."),
    ]
    assert "2/2" in result.stderr


def test_bulk_command_reports_a_bad_file_in_one_line(org, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", org.database.url.render_as_string(False))
    path = tmp_path / "bulk.csv"
    path.write_text("serial,model\n")

    result = CliRunner().invoke(requests_group, ["bulk", str(path), "--user", "admin"])

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: The header 'serial,model' is wrong (missing username, domain, "
        "token_type; unknown serial, model); it must be username,domain,token_type, "
        "optionally followed by token_model and shipping_address.\n"
    )
