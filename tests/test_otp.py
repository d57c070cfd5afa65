import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from engine import otp

# RFC 6238 appendix B and RFC 4226 appendix D use this ASCII seed for SHA1.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode("ascii")

NOW = datetime(2024, 5, 17, 9, 30, 10, tzinfo=UTC)
NOW_STEP = int(NOW.timestamp()) // 30

INVALID = (
    "The code is not valid. Enter the 6-digit code currently shown in your "
    "authenticator app; check that your phone's clock is set automatically."
)
REPLAYED = (
    "This code was already used. Wait until your authenticator app shows the "
    "next code and enter that one."
)
MISMATCH = (
    "A stored token secret cannot be decrypted: the token encryption key "
    "(TOKEN_ENCRYPTION_KEY) changed since the secret was stored. Set "
    "TOKEN_ENCRYPTION_KEY back to its former value, or keep the new value and "
    "list the former one in TOKEN_ENCRYPTION_PREVIOUS_KEYS so that existing "
    "secrets stay readable."
)


@pytest.fixture
def secret():
    return otp.new_totp_secret()


def reference_code(secret, step):
    """Compute a code with pyotp, independently of engine.otp."""
    return pyotp.TOTP(secret).at(step * 30)


# --- SecretBox --------------------------------------------------------------


def test_secret_box_round_trip():
    box = otp.SecretBox("configured key")

    assert box.decrypt(box.encrypt("JBSWY3DPEHPK3PXP")) == "JBSWY3DPEHPK3PXP"
    assert box.decrypt(box.encrypt("clé ünïcode")) == "clé ünïcode"


def test_secret_box_ciphertext_hides_plaintext_and_varies():
    box = otp.SecretBox("configured key")

    first = box.encrypt("JBSWY3DPEHPK3PXP")
    second = box.encrypt("JBSWY3DPEHPK3PXP")

    assert "JBSWY3DPEHPK3PXP" not in first
    assert first != second


def test_secret_box_same_key_string_decrypts_across_instances():
    ciphertext = otp.SecretBox("configured key").encrypt("secret")

    assert otp.SecretBox("configured key").decrypt(ciphertext) == "secret"


def test_secret_box_wrong_key_raises_mismatch_with_message():
    ciphertext = otp.SecretBox("old key").encrypt("secret")

    with pytest.raises(otp.SecretKeyMismatch) as excinfo:
        otp.SecretBox("new key").decrypt(ciphertext)

    assert str(excinfo.value) == MISMATCH
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize("ciphertext", ["", "not a ciphertext", "gAAAAAB", "é"])
def test_secret_box_garbage_raises_mismatch(ciphertext):
    with pytest.raises(otp.SecretKeyMismatch, match="TOKEN_ENCRYPTION_KEY"):
        otp.SecretBox("key").decrypt(ciphertext)


def test_secret_box_tampered_ciphertext_raises_mismatch():
    box = otp.SecretBox("key")
    raw = bytearray(base64.urlsafe_b64decode(box.encrypt("secret")))
    raw[-40] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode("ascii")

    with pytest.raises(otp.SecretKeyMismatch):
        box.decrypt(tampered)


def test_secret_box_rotation_reads_old_and_writes_new():
    old_ciphertext = otp.SecretBox("old key").encrypt("secret")
    box = otp.SecretBox("new key", previous_keys=["older key", "old key"])

    assert box.decrypt(old_ciphertext) == "secret"

    new_ciphertext = box.encrypt("secret")
    assert otp.SecretBox("new key").decrypt(new_ciphertext) == "secret"
    with pytest.raises(otp.SecretKeyMismatch):
        otp.SecretBox("old key").decrypt(new_ciphertext)


def test_secret_box_rotate_re_encrypts_with_current_key():
    old_ciphertext = otp.SecretBox("old key").encrypt("secret")
    box = otp.SecretBox("new key", previous_keys=["old key"])

    rotated = box.rotate(old_ciphertext)

    assert otp.SecretBox("new key").decrypt(rotated) == "secret"
    with pytest.raises(otp.SecretKeyMismatch):
        otp.SecretBox("other").rotate(old_ciphertext)


@pytest.mark.parametrize("current, previous", [("", []), ("key", ["ok", ""])])
def test_secret_box_refuses_empty_key(current, previous):
    with pytest.raises(ValueError) as excinfo:
        otp.SecretBox(current, previous_keys=previous)

    assert str(excinfo.value) == (
        "The token encryption key is empty. Set TOKEN_ENCRYPTION_KEY (or "
        "SECRET_KEY) to a long random string."
    )


# --- Enrolment ----------------------------------------------------------------


def test_new_totp_secret_is_160_bit_base32():
    first = otp.new_totp_secret()

    assert re.fullmatch(r"[A-Z2-7]{32}", first)
    assert len(base64.b32decode(first)) == 20
    assert first != otp.new_totp_secret()


def test_provisioning_uri_follows_key_uri_format(secret):
    uri = otp.provisioning_uri(secret, "alice@example.com", "ACME Corp")

    parts = urlsplit(uri)
    query = parse_qs(parts.query, strict_parsing=True)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert unquote(parts.path) == "/ACME Corp:alice@example.com"
    assert query == {
        "secret": [secret],
        "issuer": ["ACME Corp"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }


def test_provisioning_uri_is_read_back_by_pyotp(secret):
    uri = otp.provisioning_uri(secret, "bob & co?", "Issuer/Name")

    parsed = pyotp.parse_uri(uri)

    assert parsed.secret == secret
    assert parsed.issuer == "Issuer/Name"
    assert parsed.name == "bob & co?"
    assert parsed.now() == otp.totp_code(secret)


@pytest.mark.parametrize(
    "account, issuer, message",
    [
        (
            "alice",
            "ACME:Corp",
            "The issuer 'ACME:Corp' cannot be put in an authenticator link: "
            "it must be non-empty and contain no colon.",
        ),
        (
            "",
            "ACME",
            "The account name '' cannot be put in an authenticator link: "
            "it must be non-empty and contain no colon.",
        ),
    ],
)
def test_provisioning_uri_refuses_bad_label(secret, account, issuer, message):
    with pytest.raises(ValueError) as excinfo:
        otp.provisioning_uri(secret, account, issuer)

    assert str(excinfo.value) == message


def test_qr_svg_is_a_self_contained_svg_element(secret):
    uri = otp.provisioning_uri(secret, "alice", "ACME")

    svg = otp.qr_svg(uri)

    assert svg.startswith("<svg")
    root = ET.fromstring(svg)
    assert root.tag == "svg"
    assert [child.tag for child in root] == ["path"]
    assert int(root.get("width")) > 100
    assert secret not in svg
    assert "<script" not in svg


def test_qr_png_data_uri_holds_a_png(secret):
    uri = otp.provisioning_uri(secret, "alice", "ACME")

    data_uri = otp.qr_png_data_uri(uri)

    prefix = "data:image/png;base64,"
    assert data_uri.startswith(prefix)
    png = base64.b64decode(data_uri.removeprefix(prefix), validate=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


# --- Codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "unix_time, expected",
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_totp_matches_rfc_6238_sha1_vectors(unix_time, expected):
    at = datetime.fromtimestamp(unix_time, UTC)

    assert otp.totp_code(RFC_SECRET, at, digits=8) == expected
    assert otp.hotp_code(RFC_SECRET, unix_time // 30, digits=8) == expected


def test_hotp_matches_rfc_4226_vectors():
    expected = [
        "755224",
        "287082",
        "359152",
        "969429",
        "338314",
        "254676",
        "287922",
        "162583",
        "399871",
        "520489",
    ]

    assert [otp.hotp_code(RFC_SECRET, n) for n in range(10)] == expected


def test_hotp_matches_pyotp(secret):
    reference = pyotp.HOTP(secret)

    for counter in (0, 1, NOW_STEP, 2**40):
        assert otp.hotp_code(secret, counter) == reference.at(counter)


def test_hotp_accepts_lower_case_unpadded_secret():
    assert otp.hotp_code(RFC_SECRET.lower(), 0) == "755224"


def test_hotp_refuses_secret_that_is_not_base32():
    with pytest.raises(ValueError) as excinfo:
        otp.hotp_code("not base32!", 0)

    assert str(excinfo.value) == (
        "The stored TOTP secret is not valid base32; the token must be enrolled again."
    )


def test_time_step_takes_naive_datetime_as_utc():
    naive = NOW.replace(tzinfo=None)

    assert otp.time_step(naive) == otp.time_step(NOW) == NOW_STEP


def test_verify_accepts_current_code(secret):
    code = reference_code(secret, NOW_STEP)

    assert otp.verify_totp(secret, code, last_used_step=None, at=NOW) == NOW_STEP


def test_verify_accepts_code_with_spaces(secret):
    code = reference_code(secret, NOW_STEP)
    spaced = f" {code[:3]} {code[3:]} "

    assert otp.verify_totp(secret, spaced, last_used_step=None, at=NOW) == NOW_STEP


@pytest.mark.parametrize("offset", [-1, 1])
def test_verify_accepts_neighbouring_step_within_drift(secret, offset):
    code = reference_code(secret, NOW_STEP + offset)

    matched = otp.verify_totp(secret, code, last_used_step=None, at=NOW)

    assert matched == NOW_STEP + offset


@pytest.mark.parametrize("offset", [-2, 2])
def test_verify_refuses_code_two_steps_off(secret, offset):
    code = reference_code(secret, NOW_STEP + offset)
    if code in {reference_code(secret, NOW_STEP + d) for d in (-1, 0, 1)}:
        pytest.skip("random secret gave the same code for two steps")

    with pytest.raises(otp.InvalidCode) as excinfo:
        otp.verify_totp(secret, code, last_used_step=None, at=NOW)

    assert str(excinfo.value) == INVALID


def test_verify_wider_drift_accepts_two_steps_off(secret):
    code = reference_code(secret, NOW_STEP - 2)

    matched = otp.verify_totp(secret, code, last_used_step=None, at=NOW, drift_steps=2)

    assert matched == NOW_STEP - 2


def test_verify_without_drift_refuses_previous_step():
    # A fixed secret whose codes at NOW_STEP - 1 and NOW_STEP differ, so the
    # refusal cannot come from a chance collision.
    secret = RFC_SECRET
    code = reference_code(secret, NOW_STEP - 1)
    assert code != reference_code(secret, NOW_STEP)

    with pytest.raises(otp.InvalidCode):
        otp.verify_totp(secret, code, last_used_step=None, at=NOW, drift_steps=0)


def test_verify_refuses_replay_of_same_code(secret):
    code = reference_code(secret, NOW_STEP)
    step = otp.verify_totp(secret, code, last_used_step=None, at=NOW)

    with pytest.raises(otp.ReplayedCode) as excinfo:
        otp.verify_totp(
            secret, code, last_used_step=step, at=NOW + timedelta(seconds=5)
        )

    assert str(excinfo.value) == REPLAYED
    assert isinstance(excinfo.value, ValueError)


def test_verify_refuses_older_code_after_newer_one(secret):
    older = reference_code(secret, NOW_STEP - 1)
    if older == reference_code(secret, NOW_STEP):
        pytest.skip("random secret gave the same code for two steps")

    with pytest.raises(otp.ReplayedCode):
        otp.verify_totp(secret, older, last_used_step=NOW_STEP, at=NOW)


def test_verify_accepts_next_code_after_previous_use(secret):
    code = reference_code(secret, NOW_STEP)

    matched = otp.verify_totp(secret, code, last_used_step=NOW_STEP - 1, at=NOW)

    assert matched == NOW_STEP


@pytest.mark.parametrize(
    "code", ["12a456", "", "1234567", "12345", "١٢٣٤٥٦", "123-456", "12\n3456"]
)
def test_verify_refuses_malformed_code(secret, code):
    with pytest.raises(otp.InvalidCode) as excinfo:
        otp.verify_totp(secret, code, last_used_step=None, at=NOW)

    assert str(excinfo.value) == INVALID


def test_verify_refuses_wrong_code(secret):
    window = {reference_code(secret, NOW_STEP + d) for d in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in window)

    with pytest.raises(otp.InvalidCode) as excinfo:
        otp.verify_totp(secret, wrong, last_used_step=None, at=NOW)

    assert str(excinfo.value) == INVALID


def test_verify_defaults_to_now(secret):
    code = pyotp.TOTP(secret).now()
    before = otp.time_step()

    matched = otp.verify_totp(secret, code, last_used_step=None)

    assert matched in {before - 1, before, before + 1}


def test_verify_refuses_negative_drift(secret):
    with pytest.raises(ValueError, match="drift_steps must be 0 or more, not -1"):
        otp.verify_totp(secret, "123456", last_used_step=None, drift_steps=-1)


# --- Emergency access ------------------------------------------------------------


def test_new_emergency_code_uses_unambiguous_characters():
    code = otp.new_emergency_code()

    assert len(code) == 8
    assert set(code) <= set(otp.EMERGENCY_CODE_ALPHABET)
    assert not set("01OIL") & set(otp.EMERGENCY_CODE_ALPHABET)
    assert len(otp.new_emergency_code(12)) == 12


def test_new_emergency_code_refuses_short_length():
    with pytest.raises(ValueError) as excinfo:
        otp.new_emergency_code(4)

    assert str(excinfo.value) == (
        "An emergency access code needs at least 6 characters, not 4."
    )


def test_hash_code_and_check_code():
    code = otp.new_emergency_code()
    hashed = otp.hash_code(code)

    assert code not in hashed
    assert hashed.startswith("scrypt$")
    assert otp.check_code(code, hashed)
    assert not otp.check_code(code[:-1], hashed)
    assert not otp.check_code("", hashed)


def test_check_code_ignores_case_spaces_and_dashes():
    hashed = otp.hash_code("ABCD2345")

    assert otp.check_code("abcd-2345", hashed)
    assert otp.check_code(" ABCD 2345 ", hashed)


def test_hash_code_is_salted():
    assert otp.hash_code("ABCD2345") != otp.hash_code("ABCD2345")


@pytest.mark.parametrize(
    "hashed", ["", "plain", "md5$1$1$1$AAAA$AAAA", "scrypt$x$8$1$AAAA$AAAA"]
)
def test_check_code_refuses_unknown_hash_format(hashed):
    with pytest.raises(ValueError) as excinfo:
        otp.check_code("ABCD2345", hashed)

    assert str(excinfo.value) == (
        "The stored emergency access code hash is not in the expected "
        "scrypt$n$r$p$salt$hash form; issue a new emergency access code."
    )


# --- Activation links ------------------------------------------------------------


def test_new_activation_token_returns_token_and_its_digest():
    token, digest = otp.new_activation_token()

    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert otp.digest_activation_token(token) == digest
    assert token not in digest


def test_new_activation_tokens_differ():
    assert otp.new_activation_token()[0] != otp.new_activation_token()[0]


def test_digest_activation_token_distinguishes_tokens():
    assert otp.digest_activation_token("a") != otp.digest_activation_token("b")
