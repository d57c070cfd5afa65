"""Security domains, users, role grants, passwords, groups and the demo data."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers_inventory import PASSWORD, seed
from sqlalchemy import func, select

from engine.errors import ConflictError, NotFound, ValidationFailed
from engine.identity import SYSTEM_ACTOR, actor_for
from engine.models import RoleGrant, SecurityDomain, User
from engine.provisioning import directory, inventory
from engine.provisioning.demo import DEMO_PASSWORD, DEMO_USERS, load_demo_data
from engine.provisioning.inventory_cli import demo
from engine.provisioning.inventory_models import Token, TokenEvent


def test_domains_form_a_tree(database):
    with database.write() as session:
        seed(session)
        paris = directory.get_domain(session, "acme/emea/paris")

        assert paris.parent.path == "acme/emea"
        assert paris.name == "paris"
        assert [d.path for d in directory.list_domains(session)] == [
            "acme",
            "acme/americas",
            "acme/emea",
            "acme/emea/paris",
        ]


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        (
            "acme/nowhere/x",
            ValidationFailed,
            "Security domain 'acme/nowhere' does not exist; create it before "
            "'acme/nowhere/x'.",
        ),
        (
            "Acme",
            ValidationFailed,
            "Security domain path 'Acme' is not valid: use lower-case letters, "
            "digits, '-' and '_' in segments joined by '/', such as "
            "'acme/emea/paris'.",
        ),
        ("acme//emea", ValidationFailed, None),
        ("acme/emea", ConflictError, "Security domain 'acme/emea' exists already."),
    ],
)
def test_bad_domains_are_refused(database, path, error, message):
    with database.write() as session:
        seed(session)
        with pytest.raises(error) as info:
            directory.create_domain(session, path, actor="system")

    if message is not None:
        assert str(info.value) == message


def new_user(session, **overrides):
    fields = {
        "username": "newbie",
        "display_name": "New Bie",
        "email": "newbie@acme.example",
        "domain_path": "acme/emea",
        "password": PASSWORD,
    }
    fields.update(overrides)
    return directory.create_user(session, **fields, actor="system")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"username": "New Bie"},
            "username",
            "'New Bie' is not a valid username: use 2 to 64 lower-case letters, "
            "digits, '.', '_' or '-', starting with a letter or digit.",
        ),
        (
            {"username": "system"},
            "username",
            "'system' is reserved; choose another username.",
        ),
        ({"display_name": "  "}, "display_name", "Enter the person's full name."),
        (
            {"email": "newbie.example"},
            "email",
            "'newbie.example' is not a valid e-mail address; use the form "
            "name@example.com.",
        ),
        (
            {"domain_path": "acme/mars"},
            "domain_path",
            "Security domain 'acme/mars' does not exist; the security domains are: "
            "acme, acme/americas, acme/emea, acme/emea/paris.",
        ),
        (
            {"password": "short"},
            "password",
            "The password must have at least 12 characters.",
        ),
    ],
)
def test_create_user_reports_each_bad_field(database, overrides, field, message):
    with database.write() as session:
        seed(session)
        with pytest.raises(ValidationFailed) as info:
            new_user(session, **overrides)

    assert info.value.field_errors == {field: message}
    assert str(info.value).startswith("The user was not created.")


def test_a_taken_username_is_refused(database):
    with database.write() as session:
        seed(session)
        with pytest.raises(ConflictError) as info:
            new_user(session, username="jdoe")

    assert str(info.value) == (
        "A user named 'jdoe' exists already; choose another username."
    )


def test_roles_are_granted_in_the_users_domain_or_a_given_one(database):
    with database.write() as session:
        seed(session)
        new_user(session, roles=["request_approver", ("token_distributor", "acme")])
        actor = actor_for(session, "newbie")

    assert actor.grants == (
        ("request_approver", "acme/emea"),
        ("token_distributor", "acme"),
    )
    assert actor.has_role("request_approver", "acme/emea/paris")
    assert not actor.has_role("request_approver", "acme/americas")


def test_grant_is_idempotent_and_revoke_removes_it(database):
    with database.write() as session:
        seed(session)
        first = directory.grant_role(
            session, "jdoe", "request_approver", "acme/emea", actor="system"
        )
        again = directory.grant_role(
            session, "jdoe", "request_approver", "acme/emea", actor="system"
        )
        assert first.id == again.id

        directory.revoke_role(
            session, "jdoe", "request_approver", "acme/emea", actor="system"
        )
        assert actor_for(session, "jdoe").grants == ()
        count = session.scalar(select(func.count()).select_from(RoleGrant))
        assert count == 6  # the seeded people's grants only

        with pytest.raises(NotFound) as info:
            directory.revoke_role(
                session, "jdoe", "request_approver", "acme/emea", actor="system"
            )
    assert str(info.value) == (
        "User 'jdoe' does not hold the role request_approver in 'acme/emea'; "
        "nothing was revoked."
    )


def test_unknown_role_is_refused(database):
    with database.write() as session:
        seed(session)
        with pytest.raises(ValidationFailed) as info:
            directory.grant_role(session, "jdoe", "superuser", "acme", actor="system")

    assert str(info.value) == (
        "Unknown role 'superuser'; the roles are: request_approver, "
        "token_distributor, token_administrator, administrator."
    )


def test_authenticate_checks_scrypt_hashes(database):
    with database.write() as session:
        seed(session)
        user = directory.authenticate(session, "jdoe", PASSWORD)

        assert user is not None and user.username == "jdoe"
        assert user.password_hash.startswith("scrypt:")
        assert PASSWORD not in user.password_hash
        assert directory.authenticate(session, "jdoe", PASSWORD + "x") is None
        assert directory.authenticate(session, "nobody", PASSWORD) is None
        assert directory.authenticate(session, "jdoe", "") is None


def test_inactive_users_and_users_without_password_cannot_log_in(database):
    with database.write() as session:
        seed(session)
        new_user(session, password=None)
        assert directory.authenticate(session, "newbie", "") is None
        assert directory.authenticate(session, "newbie", PASSWORD) is None

        directory.get_user(session, "jdoe").is_active = False
        assert directory.authenticate(session, "jdoe", PASSWORD) is None


def test_set_password_replaces_the_old_one(database):
    with database.write() as session:
        seed(session)
        directory.set_password(session, "jdoe", "a brand new secret", actor="system")

        assert directory.authenticate(session, "jdoe", PASSWORD) is None
        assert directory.authenticate(session, "jdoe", "a brand new secret")
        with pytest.raises(ValidationFailed) as info:
            directory.set_password(session, "jdoe", "tiny", actor="system")
    assert info.value.field_errors == {
        "password": "The password must have at least 12 characters."
    }


def test_list_users_honours_scope(database):
    with database.write() as session:
        seed(session)
        emea_admin = actor_for(session, "emea_admin")
        jdoe = actor_for(session, "jdoe")

        seen_by_emea = {u.username for u in directory.list_users(session, emea_admin)}
        seen_by_jdoe = [u.username for u in directory.list_users(session, jdoe)]
        everyone = directory.list_users(session, SYSTEM_ACTOR)
        paris = directory.list_users(
            session, SYSTEM_ACTOR, domain_path="acme/emea/paris"
        )

    assert seen_by_emea == {"emea_admin", "emea_dist", "jdoe", "paris_admin"}
    assert seen_by_jdoe == ["jdoe"]
    assert len(everyone) == 8
    assert {u.username for u in paris} == {"jdoe", "paris_admin"}


def test_group_membership_is_added_once(database):
    with database.write() as session:
        seed(session)
        directory.create_group(session, "vpn-users", "VPN")

        assert directory.add_member(session, "vpn-users", "jdoe") is True
        assert directory.add_member(session, "vpn-users", "jdoe") is False
        assert directory.groups_of(session, "jdoe") == ["vpn-users"]
        with pytest.raises(NotFound) as info:
            directory.add_member(session, "chess-club", "jdoe")
    assert str(info.value) == (
        "Group 'chess-club' does not exist; create it first or correct the group name."
    )


def snapshot(session) -> dict:
    """Return the demo data as comparable plain values."""
    return {
        "domains": sorted(session.scalars(select(SecurityDomain.path))),
        "users": sorted(
            (u.username, u.domain.path, u.password_hash)
            for u in session.scalars(select(User))
        ),
        "grants": sorted(
            (g.user.username, g.role, g.domain.path)
            for g in session.scalars(select(RoleGrant))
        ),
        "tokens": sorted(
            (t.serial, t.model.code, t.state, t.owner, t.domain_path, t.expires_on)
            for t in session.scalars(select(Token))
        ),
        "events": session.scalar(select(func.count()).select_from(TokenEvent)),
    }


def test_demo_data_is_a_small_organisation(database, settings):
    with database.write() as session:
        summary = load_demo_data(session, settings)

    with database.read() as session:
        data = snapshot(session)
        roles = {role for _, role, _ in data["grants"]}
        available = inventory.list_tokens(
            session, SYSTEM_ACTOR, state="available", domain_path="acme/apac"
        )
        jdoe = directory.authenticate(session, "jdoe", DEMO_PASSWORD)
        jdoe_tokens = [t.state for t in inventory.tokens_of(session, "jdoe")]

    assert summary.users == len(DEMO_USERS) == 20
    assert data["domains"] == [
        "acme",
        "acme/americas",
        "acme/apac",
        "acme/emea",
        "acme/emea/paris",
    ]
    assert roles == {
        "administrator",
        "request_approver",
        "token_administrator",
        "token_distributor",
    }
    assert len(available) == 30
    assert jdoe is not None
    assert jdoe_tokens == ["active"]


def test_demo_data_loads_twice_to_the_same_data(database, settings):
    with database.write() as session:
        load_demo_data(session, settings)
    with database.read() as session:
        first = snapshot(session)

    with database.write() as session:
        summary = load_demo_data(session, settings)
    with database.read() as session:
        second = snapshot(session)

    assert (summary.domains, summary.users, summary.tokens) == (0, 0, 0)
    assert second == first


def test_demo_command_loads_the_data_once(sqlite_database, monkeypatch, tmp_path):
    url = sqlite_database.url.render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()

    first = runner.invoke(demo, [])
    second = runner.invoke(demo, [])

    assert first.exit_code == 0, first.output
    assert first.output.strip() == (
        "Demo data loaded: 5 domains, 20 users and 94 tokens added. Every demo "
        "user's password is 'demo-password'."
    )
    assert second.output.strip() == (
        "Demo data loaded: 0 domains, 0 users and 0 tokens added. Every demo "
        "user's password is 'demo-password'."
    )


def test_an_unknown_domain_lists_the_first_ten_and_says_where_the_rest_are(
    database,
):
    with database.write() as session:
        directory.create_domain(session, "org", actor="system")
        for n in range(12):
            directory.create_domain(session, f"org/site{n:02d}", actor="system")

    with database.write() as session:
        message = directory.unknown_domain_message(session, "org/mars")
        assert directory.find_domain(session, "org/mars") is None

    assert message == (
        "Security domain 'org/mars' does not exist; the security domains are: org, "
        "org/site00, org/site01, org/site02, org/site03, org/site04, org/site05, "
        "org/site06, org/site07, org/site08, ... (`provisioning users domains` "
        "lists them all)."
    )


def test_an_unknown_domain_when_none_exists(database):
    with database.read() as session:
        message = directory.unknown_domain_message(session, "acme")

    assert message == (
        "Security domain 'acme' does not exist, and no security domain is defined "
        "yet; an administrator creates them first."
    )
