"""Software tokens: issue, one-time activation link, enabling, verification,
and emergency access."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers_inventory import actor, add_token, seed

from engine import otp
from engine.errors import ConflictError, NotFound, PermissionDenied, ValidationFailed
from engine.models import utcnow
from engine.provisioning import inventory, software
from engine.provisioning.inventory_models import TokenState

STEP = timedelta(seconds=otp.TOTP_PERIOD)


def issue(db, settings, owner="jdoe"):
    with db.write() as session:
        token, link = software.issue_software_token(
            session, owner=owner, model_code="AUTHAPP", request_id=7, settings=settings
        )
        return token.serial, link


def open_link(db, settings, link, now=None, by="jdoe"):
    with db.write() as session:
        token, uri, svg = software.activation_details(
            session, link, actor=actor(session, by), settings=settings, now=now
        )
        return token.serial, uri, svg


def secret_of(uri: str) -> str:
    """Read the secret back out of an otpauth URI, as an authenticator app does."""
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    return parse_qs(parts.query)["secret"][0]


@pytest.fixture
def seeded(database):
    with database.write() as session:
        seed(session)
    return database


def test_issuing_stores_the_secret_encrypted_and_only_the_links_digest(
    seeded, settings
):
    serial, link = issue(seeded, settings)

    assert link.startswith(f"{settings.base_url}/activate/")
    link_token = link.rsplit("/", 1)[1]
    with seeded.read() as session:
        token = inventory.find_token(session, serial)
        assert (token.state, token.owner, token.request_id) == ("assigned", "jdoe", 7)
        assert token.domain_path == "acme/emea/paris"
        assert token.activation_digest == otp.digest_activation_token(link_token)
        assert link_token not in (token.activation_digest or "")
        secret = otp.SecretBox(settings.token_encryption_key).decrypt(
            token.secret_ciphertext
        )
        assert secret not in token.secret_ciphertext
        expires_in = token.activation_expires_at - utcnow()
        assert timedelta(hours=71) < expires_in <= timedelta(hours=72)


def test_the_qr_secret_gives_codes_that_enable_and_verify(seeded, settings):
    serial, link = issue(seeded, settings)
    _, uri, svg = open_link(seeded, settings, link)
    secret = secret_of(uri)
    start = utcnow()

    assert uri.startswith("otpauth://totp/Token%20Provisioning:jdoe?secret=")
    assert svg == otp.qr_svg(uri)
    with seeded.write() as session:
        token = software.enable_software_token(
            session,
            actor(session, "jdoe"),
            serial,
            otp.totp_code(secret, start),
            settings=settings,
            at=start,
        )
        assert token.state == TokenState.ACTIVE

    later = start + 2 * STEP
    with seeded.write() as session:
        code = otp.totp_code(secret, later)
        assert software.verify_code(session, serial, code, settings=settings, at=later)
        # The same code again, and an older one, are refused.
        assert not software.verify_code(
            session, serial, code, settings=settings, at=later
        )
        assert not software.verify_code(
            session,
            serial,
            otp.totp_code(secret, start + STEP),
            settings=settings,
            at=later,
        )
        assert not software.verify_code(
            session, serial, "000000", settings=settings, at=later
        )


def test_an_activation_link_works_once(seeded, settings):
    _, link = issue(seeded, settings)
    open_link(seeded, settings, link)

    with pytest.raises(NotFound) as info:
        open_link(seeded, settings, link)

    assert str(info.value) == (
        "This activation link is not valid or has already been used. Ask your "
        "token administrator for a new activation link."
    )


@pytest.mark.parametrize("by", ["ebrown", "root"])
def test_only_the_owner_may_open_an_activation_link(seeded, settings, by):
    serial, link = issue(seeded, settings)

    with pytest.raises(PermissionDenied) as info:
        open_link(seeded, settings, link, by=by)

    assert str(info.value) == (
        f"This activation link is for a software token of another user, so {by} "
        "may not open it; it stays unused for its owner. If the token is yours, "
        "sign in with your own account and open the link again."
    )
    with seeded.read() as session:
        token = inventory.find_token(session, serial)
        assert token.activation_digest is not None
        assert [e.message for e in inventory.token_history(session, serial)] == [
            "Issued for request 7",
            "Assigned to jdoe",
        ]
    assert open_link(seeded, settings, link)[1].startswith("otpauth://totp/")


def test_an_expired_activation_link_is_refused(seeded, settings):
    serial, link = issue(seeded, settings)
    with seeded.read() as session:
        expires_at = inventory.find_token(session, serial).activation_expires_at

    with pytest.raises(ConflictError) as info:
        open_link(seeded, settings, link, now=expires_at)

    assert str(info.value) == (
        f"This activation link expired on {expires_at:%Y-%m-%d %H:%M} UTC. Ask "
        "your token administrator for a new activation link."
    )
    # Just before the end, the link still works.
    open_link(seeded, settings, link, now=expires_at - timedelta(seconds=1))


def test_a_new_activation_link_replaces_the_old_one(seeded, settings):
    serial, old_link = issue(seeded, settings)

    with seeded.write() as session:
        with pytest.raises(PermissionDenied):
            software.new_activation_link(
                session, actor(session, "us_admin"), serial, settings=settings
            )
        new_link = software.new_activation_link(
            session, actor(session, "paris_admin"), serial, settings=settings
        )

    with pytest.raises(NotFound):
        open_link(seeded, settings, old_link)
    _, uri, _ = open_link(seeded, settings, new_link)
    assert secret_of(uri)


def test_enabling_needs_a_current_code_from_the_owner(seeded, settings):
    serial, link = issue(seeded, settings)
    _, uri, _ = open_link(seeded, settings, link)
    code = otp.totp_code(secret_of(uri))

    with seeded.write() as session:
        with pytest.raises(ValidationFailed) as info:
            software.enable_software_token(
                session, actor(session, "jdoe"), serial, "123 456x", settings=settings
            )
        assert info.value.field_errors == {"code": otp.INVALID_CODE_MESSAGE}
        with pytest.raises(PermissionDenied) as denied:
            software.enable_software_token(
                session, actor(session, "ebrown"), serial, code, settings=settings
            )
        assert str(denied.value) == (
            f"Token {serial} is not assigned to you; only its owner can enable it."
        )
        assert inventory.find_token(session, serial).state == TokenState.ASSIGNED


def test_without_an_encryption_key_the_secret_key_encrypts(seeded, settings):
    only_secret_key = dataclasses.replace(settings, token_encryption_key="")
    serial, link = issue(seeded, only_secret_key)
    with seeded.read() as session:
        ciphertext = inventory.find_token(session, serial).secret_ciphertext

    _, uri, _ = open_link(seeded, only_secret_key, link)

    assert otp.SecretBox(settings.secret_key).decrypt(ciphertext) == secret_of(uri)
    with pytest.raises(otp.SecretKeyMismatch):
        otp.SecretBox(settings.token_encryption_key).decrypt(ciphertext)


def test_software_token_needs_a_software_profile(seeded, settings):
    with seeded.write() as session:
        with pytest.raises(ValidationFailed) as info:
            software.issue_software_token(
                session,
                owner="jdoe",
                model_code="SID700",
                request_id=None,
                settings=settings,
            )
    assert str(info.value) == (
        "Token model 'SID700' is a hardware model; a software token needs a "
        "software token profile."
    )


# -- emergency access -----------------------------------------------------------------


def test_emergency_code_works_within_its_lifetime_only(seeded):
    with seeded.write() as session:
        add_token(session, "000123", state="active", owner="jdoe")
        code = software.emergency_access(session, actor(session, "jdoe"), "000123")
        token = inventory.find_token(session, "000123")
        expires_at = token.emergency_expires_at

        assert token.temporarily_unavailable
        assert code not in (token.emergency_code_hash or "")
        lifetime = expires_at - utcnow()
        assert timedelta(hours=7, minutes=59) < lifetime <= timedelta(hours=8)
        assert software.check_emergency_code(session, "000123", code)
        assert software.check_emergency_code(session, "000123", code.lower())
        assert not software.check_emergency_code(session, "000123", "WRONG234")
        assert software.check_emergency_code(
            session, "000123", code, at=expires_at - timedelta(seconds=1)
        )
        assert not software.check_emergency_code(session, "000123", code, at=expires_at)
        history = inventory.token_history(session, "000123")
        assert history[-1].message.startswith("Emergency access until ")


def test_emergency_access_refusals(seeded):
    with seeded.write() as session:
        add_token(session, "000123", state="active", owner="jdoe")
        add_token(session, "000124", state="shipped", owner="jdoe")

        with pytest.raises(PermissionDenied) as info:
            software.emergency_access(session, actor(session, "ebrown"), "000123")
        assert str(info.value) == (
            "Token 000123 is not assigned to you; only its owner or a token "
            "administrator can ask for emergency access."
        )
        with pytest.raises(ConflictError) as info:
            software.emergency_access(session, actor(session, "jdoe"), "000124")
        assert str(info.value) == (
            "Token 000124 is shipped; emergency access is only for an active "
            "token that is temporarily out of reach."
        )
        # A token administrator of the token's inventory may help.
        assert software.emergency_access(
            session, actor(session, "emea_admin"), "000123"
        )


def test_emergency_code_dies_with_a_disabled_token_or_a_real_code(seeded, settings):
    serial, link = issue(seeded, settings)
    _, uri, _ = open_link(seeded, settings, link)
    secret = secret_of(uri)
    now = utcnow()
    with seeded.write() as session:
        jdoe = actor(session, "jdoe")
        software.enable_software_token(
            session, jdoe, serial, otp.totp_code(secret, now), settings=settings, at=now
        )
        code = software.emergency_access(session, jdoe, serial)

        later = now + STEP
        software.verify_code(
            session, serial, otp.totp_code(secret, later), settings=settings, at=later
        )
        assert not inventory.find_token(session, serial).temporarily_unavailable
        assert not software.check_emergency_code(session, serial, code)

        code = software.emergency_access(session, jdoe, serial)
        inventory.disable_token(session, actor(session, "paris_admin"), serial)
        assert not software.check_emergency_code(session, serial, code)
