"""The token inventory: lifecycle, CSV import, scope, distribution, receipt."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from click.testing import CliRunner
from helpers_inventory import FUTURE, actor, add_token, seed
from sqlalchemy import func, select

from engine.errors import ConflictError, NotFound, PermissionDenied, ValidationFailed
from engine.provisioning import inventory
from engine.provisioning.handlers import expire_tokens
from engine.provisioning.inventory import ImportRefused, import_tokens_csv
from engine.provisioning.inventory_cli import tokens, users
from engine.provisioning.inventory_models import Token, TokenEvent, TokenState

TODAY = date(2030, 6, 1)


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


# -- lifecycle ------------------------------------------------------------------


def test_change_state_records_the_history(database):
    with database.write() as session:
        seed(session)
        token = add_token(session, "000123")
        inventory.change_state(session, token, "assigned", actor="emea_admin")
        inventory.change_state(
            session, token, "shipped", actor="emea_admin", message="By DHL"
        )

    with database.read() as session:
        history = [
            (e.from_state, e.to_state, e.actor, e.message)
            for e in inventory.token_history(session, "000123")
        ]

    assert history == [
        ("available", "assigned", "emea_admin", ""),
        ("assigned", "shipped", "emea_admin", "By DHL"),
    ]


@pytest.mark.parametrize(
    ("state", "target", "message"),
    [
        (
            "assigned",
            "assigned",
            "Token 000123 is assigned and cannot become assigned (from assigned "
            "it can become: active, available, disabled, expired, lost, shipped); "
            "choose a token in state available.",
        ),
        (
            "available",
            "shipped",
            "Token 000123 is available and cannot become shipped (from available "
            "it can become: assigned, disabled, expired, lost); only an assigned "
            "hardware token can be shipped.",
        ),
        (
            "lost",
            "active",
            "Token 000123 is lost and cannot become active (from lost it can "
            "become: disabled); only a shipped hardware token, an assigned "
            "software token or a disabled token can be enabled.",
        ),
        (
            "disabled",
            "disabled",
            "Token 000123 is disabled and cannot become disabled (from disabled "
            "it can become: active, available, lost); it is disabled already.",
        ),
    ],
)
def test_illegal_transitions_are_refused_and_leave_no_trace(
    database, state, target, message
):
    with database.write() as session:
        seed(session)
        token = add_token(session, "000123", state=state)
        with pytest.raises(ConflictError) as info:
            inventory.change_state(session, token, target, actor="emea_admin")

        assert str(info.value) == message
        assert token.state == state
        assert count(session, TokenEvent) == 0


@pytest.mark.parametrize("state", TokenState.ALL)
def test_any_token_can_be_disabled_or_lost_but_not_twice(database, state):
    with database.write() as session:
        seed(session)
        add_token(session, "000123", state=state)
        for target in ("disabled", "lost"):
            allowed = target in inventory.TRANSITIONS[state]
            assert allowed == (state != target), (state, target)


# -- CSV import ---------------------------------------------------------------------


def import_csv(db, text, *, user="emea_admin", domain="acme/emea", skip=False):
    with db.write() as session:
        return import_tokens_csv(
            session,
            actor(session, user),
            text,
            domain_path=domain,
            skip_bad_rows=skip,
            today=TODAY,
        )


def test_a_good_file_is_imported_with_history(database):
    with database.write() as session:
        seed(session)
    text = "serial,model,expiry\n000001,SID700,2031-01-31\n000002,SID800,2032-12-31\n"

    report = import_csv(database, text.encode())

    assert report.imported == 2
    assert [(r.line, r.serial, r.ok, r.message) for r in report.rows] == [
        (2, "000001", True, "imported"),
        (3, "000002", True, "imported"),
    ]
    with database.read() as session:
        token = inventory.find_token(session, "000002")
        assert (token.model.code, token.state, token.domain_path) == (
            "SID800",
            "available",
            "acme/emea",
        )
        assert token.expires_on == date(2032, 12, 31)
        (event,) = inventory.token_history(session, "000002")
        assert (event.from_state, event.to_state, event.actor) == (
            None,
            "available",
            "emea_admin",
        )


BAD_FILE = (
    "serial,model,expiry\n"
    "000001,SID700,2031-01-31\n"  # 2 fine
    "000002,SID999,2031-01-31\n"  # 3 unknown model
    "000001,SID700,2031-01-31\n"  # 4 duplicate in file
    "000777,SID700,2031-01-31\n"  # 5 already in inventory
    "000003,SID700,31/01/2031\n"  # 6 bad date
    "000004,SID700,2030-05-31\n"  # 7 expired
    "000005,,2031-01-31\n"  # 8 missing model
    "000006,AUTHAPP,2031-01-31\n"  # 9 software profile
    "000007,SID700\n"  # 10 too few values
    "\n"  # 11 blank: ignored
    "00 08,SID700,2031-01-31\n"  # 12 bad serial
    "000009,SID800,2031-02-30\n"  # 13 no such day
)
BAD_FILE_ERRORS = [
    (3, "unknown token model 'SID999'; known hardware models: SID700, SID800"),
    (4, "serial 000001 appears again (first on line 2)"),
    (5, "serial 000777 is already in the inventory (state assigned)"),
    (6, "expiry '31/01/2031' is not a date in the form YYYY-MM-DD"),
    (7, "expiry 2030-05-31 is in the past; the token has expired"),
    (8, "the model is missing"),
    (
        9,
        "token model 'AUTHAPP' is a software token profile; only hardware tokens "
        "are imported from a file",
    ),
    (10, "expected 3 values (serial,model,expiry), found 2"),
    (12, "serial '00 08' may contain only letters, digits and '-' (at most 64)"),
    (13, "expiry '2031-02-30' is not a date in the form YYYY-MM-DD"),
]


def test_a_bad_file_is_refused_whole_with_a_report(database):
    with database.write() as session:
        seed(session)
        add_token(session, "000777", state="assigned", owner="jdoe")

    with pytest.raises(ImportRefused) as info:
        import_csv(database, BAD_FILE)

    report = info.value.report
    assert [(r.line, r.message) for r in report.errors] == BAD_FILE_ERRORS
    assert report.imported == 0
    assert (2, "000001", True, "valid, not imported (file refused)") in [
        (r.line, r.serial, r.ok, r.message) for r in report.rows
    ]
    assert str(info.value).startswith(
        "Import refused, nothing was imported: 10 lines have errors. Fix them and "
        "import the file again, or skip the bad lines.\n"
        "  line 3: unknown token model 'SID999'"
    )
    with database.read() as session:
        assert count(session, Token) == 1
        assert count(session, TokenEvent) == 0


def test_skip_bad_rows_imports_the_good_ones(database):
    with database.write() as session:
        seed(session)
        add_token(session, "000777", state="assigned", owner="jdoe")

    report = import_csv(database, BAD_FILE, skip=True)

    assert report.imported == 1
    assert [(r.line, r.message) for r in report.errors] == BAD_FILE_ERRORS
    with database.read() as session:
        assert sorted(session.scalars(select(Token.serial))) == ["000001", "000777"]


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [
        (b"", 1, 'the header must be "serial,model,expiry", not "an empty file"'),
        (
            b"serial;model;expiry\n1;SID700;2031-01-01\n",
            1,
            'the header must be "serial,model,expiry", not "serial;model;expiry"',
        ),
        (
            b"serial,model,expiry\n\xff\xfe,SID700,2031-01-01\n",
            2,
            "the file is not UTF-8 text (byte 1 of the line); save it as CSV UTF-8 "
            "and import it again",
        ),
        (
            "\ufeffserial,model,expiry\r\n1,SID700,2031-01-01\r\n".encode()
            + b"2,SID7\xe900,2031-01-01\r\n",
            3,
            "the file is not UTF-8 text (byte 7 of the line); save it as CSV UTF-8 "
            "and import it again",
        ),
    ],
    ids=["empty", "semicolons", "latin-1 on line 2", "latin-1 on line 3"],
)
def test_a_file_that_is_not_a_token_csv_is_refused(database, data, line, message):
    with database.write() as session:
        seed(session)

    with pytest.raises(ImportRefused) as info:
        import_csv(database, data, skip=True)

    assert [(r.line, r.message) for r in info.value.report.rows] == [(line, message)]
    with database.read() as session:
        assert session.scalars(select(Token.serial)).all() == []


def test_header_may_differ_in_case_and_file_may_start_with_a_bom(database):
    with database.write() as session:
        seed(session)

    report = import_csv(
        database, "\ufeffSerial, Model ,EXPIRY\r\n9,SID700,2031-01-01\r\n".encode()
    )

    assert report.imported == 1


def test_import_into_an_unknown_domain_names_the_existing_ones(database):
    with database.write() as session:
        seed(session)

    with pytest.raises(NotFound) as info:
        import_csv(
            database,
            "serial,model,expiry\n1,SID700,2031-01-01\n",
            user="root",
            domain="nowhere",
        )

    assert str(info.value) == (
        "Security domain 'nowhere' does not exist; the security domains are: acme, "
        "acme/americas, acme/emea, acme/emea/paris."
    )
    with database.read() as session:
        assert session.scalars(select(Token.serial)).all() == []


def test_cli_import_counts_tokens_and_skipped_lines_in_words(cli_env, tmp_path):
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        f"serial,model,expiry\n000001,SID700,{FUTURE}\n000002,SID700,{FUTURE}\n"
        "000003,SID999,2031-01-01\n"
    )

    done = CliRunner().invoke(
        tokens,
        ["import", str(mixed), "--domain", "acme/emea", "--skip-bad-rows"],
    )

    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[-1] == (
        "Imported 2 tokens into acme/emea; skipped 1 bad line."
    )


def test_import_needs_a_token_administrator_of_the_domain(database):
    with database.write() as session:
        seed(session)

    for user, domain in (("us_admin", "acme/emea"), ("emea_dist", "acme/emea")):
        with pytest.raises(PermissionDenied) as info:
            import_csv(
                database,
                "serial,model,expiry\n1,SID700,2031-01-01\n",
                user=user,
                domain=domain,
            )
        assert str(info.value) == (
            f"{user} may not import tokens into 'acme/emea': that needs the token "
            "administrator role in that security domain."
        )
    report = import_csv(
        database, "serial,model,expiry\n1,SID700,2031-01-01\n", user="root"
    )
    assert report.imported == 1


# -- scope ----------------------------------------------------------------------------


def stock(session):
    add_token(session, "E-1", domain="acme/emea")
    add_token(session, "E-2", domain="acme/emea", model="SID800")
    add_token(session, "P-1", domain="acme/emea/paris")
    add_token(session, "P-2", domain="acme/emea/paris", state="assigned", owner="x")
    add_token(session, "U-1", domain="acme/americas")
    add_token(
        session, "E-OLD", domain="acme/emea", expires_on=date.today() - timedelta(1)
    )


def test_token_lists_are_limited_to_the_actors_scope(database):
    with database.write() as session:
        seed(session)
        stock(session)

        def serials(username, **filters):
            who = actor(session, username)
            return [t.serial for t in inventory.list_tokens(session, who, **filters)]

        assert serials("emea_admin") == ["E-1", "E-2", "E-OLD", "P-1", "P-2"]
        assert serials("paris_admin") == ["P-1", "P-2"]
        assert serials("us_dist") == ["U-1"]
        assert serials("jdoe") == []
        assert serials("emea_admin", state="assigned") == ["P-2"]
        assert serials("emea_admin", model_code="SID800") == ["E-2"]
        assert serials("root", domain_path="acme/americas") == ["U-1"]


def test_a_token_outside_scope_looks_absent(database):
    with database.write() as session:
        seed(session)
        stock(session)

        assert inventory.get_token(session, actor(session, "us_dist"), "U-1")
        with pytest.raises(NotFound) as info:
            inventory.get_token(session, actor(session, "us_dist"), "E-1")
    assert str(info.value) == (
        "No token with serial number E-1 in your scope; check the serial number."
    )


def test_available_serials_follow_scope_model_and_the_requests_branch(database):
    with database.write() as session:
        seed(session)
        stock(session)

        def available(username, domain):
            return [
                t.serial
                for t in inventory.available_serials(
                    session,
                    actor(session, username),
                    model_code="SID700",
                    domain_path=domain,
                )
            ]

        # The region's stock and the office's stock both serve a Paris request;
        # expired, assigned, other-model and other-region tokens never show.
        assert available("emea_dist", "acme/emea/paris") == ["E-1", "P-1"]
        assert available("paris_admin", "acme/emea/paris") == ["P-1"]
        assert available("us_dist", "acme/emea/paris") == []
        assert available("us_dist", "acme/americas") == ["U-1"]


def test_administrators_outside_scope_cannot_disable(database):
    with database.write() as session:
        seed(session)
        stock(session)
        with pytest.raises(PermissionDenied) as info:
            inventory.disable_token(session, actor(session, "us_admin"), "E-1")
        assert str(info.value) == (
            "us_admin may not disable token E-1: it belongs to the inventory of "
            "'acme/emea', outside your scope (acme/americas). Ask a token "
            "administrator of that domain."
        )
        # A distributor hands tokens out but does not keep the inventory.
        with pytest.raises(PermissionDenied):
            inventory.disable_token(session, actor(session, "emea_dist"), "E-1")
        with pytest.raises(PermissionDenied):
            inventory.unassign_token(session, actor(session, "paris_admin"), "E-1")

        token = inventory.disable_token(
            session, actor(session, "emea_admin"), "E-1", reason="Broken"
        )
        assert token.state == "disabled"
        assert inventory.token_history(session, "E-1")[-1].message == "Broken"


# -- distribution and receipt ------------------------------------------------------


def ship(session, serial, *, by="emea_dist", **overrides):
    fields = {
        "serial": serial,
        "owner": "jdoe",
        "request_id": 42,
        "model_code": "SID700",
        "shipping_address": "1 rue de la Paix, Paris",
        "carrier": "dhl",
        "tracking_number": "JD0001",
        "actor": actor(session, by),
    }
    fields.update(overrides)
    return inventory.assign_and_ship(session, **fields)


def test_distribution_assigns_ships_and_the_owner_enables_on_receipt(database):
    with database.write() as session:
        seed(session)
        stock(session)
        token = ship(session, "E-1")

        assert (token.state, token.owner, token.request_id) == ("shipped", "jdoe", 42)
        assert (token.carrier, token.tracking_number) == ("dhl", "JD0001")
        assert token.shipping_address == "1 rue de la Paix, Paris"

        with pytest.raises(PermissionDenied) as info:
            inventory.enable_hardware_token(session, actor(session, "ebrown"), "E-1")
        assert str(info.value) == (
            "Token E-1 is not assigned to you; only its owner can confirm that "
            "it arrived."
        )
        inventory.enable_hardware_token(session, actor(session, "jdoe"), "E-1")
        with pytest.raises(ConflictError) as info:
            inventory.enable_hardware_token(session, actor(session, "jdoe"), "E-1")
        assert str(info.value) == (
            "Token E-1 is active, not shipped; only a token on its way to you can "
            "be enabled on receipt."
        )

    with database.read() as session:
        history = [
            (e.to_state, e.actor, e.message)
            for e in inventory.token_history(session, "E-1")
        ]
        mine = [t.serial for t in inventory.tokens_of(session, "jdoe")]

    assert history == [
        ("assigned", "emea_dist", "Assigned to jdoe for request 42"),
        ("shipped", "emea_dist", "Shipped by dhl, tracking number JD0001"),
        ("active", "jdoe", "Received"),
    ]
    assert mine == ["E-1"]


@pytest.mark.parametrize(
    ("serial", "overrides", "error", "message"),
    [
        (
            "P-2",
            {},
            ConflictError,
            "Serial P-2 is not available (state assigned); choose another serial.",
        ),
        (
            "E-2",
            {},
            ConflictError,
            "Serial E-2 is a SID800, but the request is for a SID700; choose "
            "another serial.",
        ),
        (
            "E-OLD",
            {},
            ConflictError,
            f"Serial E-OLD expired on {date.today() - timedelta(1):%Y-%m-%d}; "
            "choose another serial.",
        ),
        (
            "E-1",
            {"owner": "ebrown", "by": "root"},
            ConflictError,
            "Serial E-1 belongs to the inventory of 'acme/emea', which does not "
            "serve requests of 'acme/americas'; choose another serial.",
        ),
        (
            "U-1",
            {},
            PermissionDenied,
            "emea_dist may not assign token U-1: it belongs to the inventory of "
            "'acme/americas', outside your scope (acme/emea). Ask a token "
            "administrator of that domain.",
        ),
        (
            "X-404",
            {},
            NotFound,
            "Serial X-404 is not in the token inventory; check the serial number "
            "or import the token first.",
        ),
        (
            "E-1",
            {"shipping_address": " "},
            ValidationFailed,
            "Token E-1 was not shipped. shipping_address: Enter the shipping address.",
        ),
    ],
)
def test_distribution_refusals(database, serial, overrides, error, message):
    with database.write() as session:
        seed(session)
        stock(session)
        with pytest.raises(error) as info:
            ship(session, serial, **overrides)

        assert str(info.value) == message
        assert count(session, TokenEvent) == 0


def test_unassign_returns_an_assigned_token_to_stock(database):
    with database.write() as session:
        seed(session)
        token = add_token(session, "000123")
        inventory.change_state(session, token, "assigned", actor="x")
        token.owner = "jdoe"

        inventory.unassign_token(session, actor(session, "emea_admin"), "000123")

        assert (token.state, token.owner) == ("available", None)
        assert inventory.token_history(session, "000123")[-1].message == (
            "Unassigned from jdoe"
        )


def test_owner_may_report_own_token_lost(database):
    with database.write() as session:
        seed(session)
        add_token(session, "000123", state="active", owner="jdoe")
        add_token(session, "000124", state="active", owner="ebrown")

        inventory.mark_lost(session, actor(session, "jdoe"), "000123")
        with pytest.raises(PermissionDenied):
            inventory.mark_lost(session, actor(session, "jdoe"), "000124")

        assert inventory.find_token(session, "000123").state == "lost"


# -- command line ----------------------------------------------------------------


@pytest.fixture
def cli_env(sqlite_database, monkeypatch, tmp_path):
    url = sqlite_database.url.render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    with sqlite_database.write() as session:
        seed(session)
    return sqlite_database


def test_cli_imports_lists_and_disables_tokens(cli_env, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(f"serial,model,expiry\n000001,SID700,{FUTURE}\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("serial,model,expiry\n000002,SID999,2031-01-01\n")
    runner = CliRunner()

    refused = runner.invoke(tokens, ["import", str(bad), "--domain", "acme/emea"])
    assert refused.exit_code == 1
    assert (
        "Error: Import refused, nothing was imported: 1 line has an error. Fix it"
        in (refused.output)
    )
    assert "line 2: unknown token model 'SID999'" in refused.output

    done = runner.invoke(
        tokens, ["import", str(good), "--domain", "acme/emea", "--user", "emea_admin"]
    )
    assert done.exit_code == 0, done.output
    assert done.output == "Imported 1 token into acme/emea.\n"

    listed = runner.invoke(tokens, ["list", "--user", "us_admin"])
    assert listed.output.strip() == "No tokens match."
    listed = runner.invoke(tokens, ["list", "--state", "available"])
    assert "000001" in listed.output and "SID700" in listed.output

    denied = runner.invoke(tokens, ["disable", "000001", "--user", "us_admin"])
    assert denied.exit_code == 1
    assert denied.output.startswith("Error: us_admin may not disable token 000001")
    disabled = runner.invoke(tokens, ["disable", "000001", "--reason", "Broken"])
    assert disabled.output.strip() == "Token 000001 is disabled."


def test_cli_creates_grants_and_lists_users(cli_env):
    runner = CliRunner()

    bad = runner.invoke(
        users,
        ["create", "New Bie", "--name", "N", "--email", "n@x.io", "--domain", "acme"],
    )
    created = runner.invoke(
        users,
        [
            "create",
            "newbie",
            "--name",
            "New Bie",
            "--email",
            "n@acme.example",
            "--domain",
            "acme/emea",
            "--role",
            "request_approver",
        ],
    )
    granted = runner.invoke(
        users, ["grant", "newbie", "token_distributor", "acme/emea/paris"]
    )
    listed = runner.invoke(users, ["list", "--domain", "acme/emea"])

    assert bad.exit_code == 1
    assert bad.output.startswith(
        "Error: The user was not created. username: 'New Bie' is not a valid username"
    )
    assert created.output.strip() == "Created user newbie in acme/emea."
    assert granted.output.strip() == "newbie is token_distributor in acme/emea/paris."
    line = next(x for x in listed.output.splitlines() if x.startswith("newbie"))
    assert "request_approver@acme/emea" in line
    assert "token_distributor@acme/emea/paris" in line


def test_the_worker_marks_tokens_past_their_expiry_date_expired(database, settings):
    yesterday = date.today() - timedelta(days=1)
    with database.write() as session:
        seed(session)
        add_token(session, "OLD-A", expires_on=yesterday)
        add_token(session, "OLD-B", state="active", owner="jdoe", expires_on=yesterday)
        add_token(session, "OLD-C", state="lost", owner="jdoe", expires_on=yesterday)
        add_token(session, "FRESH", expires_on=date.today())

    assert expire_tokens(database, settings) == 2
    assert expire_tokens(database, settings) == 0

    with database.read() as session:
        states = dict(session.execute(select(Token.serial, Token.state)).all())
        (event,) = inventory.token_history(session, "OLD-B")
        assert event.message == f"Expired on {yesterday:%Y-%m-%d}"
    assert states == {
        "OLD-A": "expired",
        "OLD-B": "expired",
        "OLD-C": "lost",
        "FRESH": "available",
    }
