"""Settings from the environment: defaults that work on a laptop, clear refusals."""

from __future__ import annotations

import stat

import pytest

from engine.config import Settings
from engine.errors import ConfigurationError
from engine.otp import SecretBox


def test_without_a_secret_key_one_is_generated_and_kept_in_the_instance_folder(
    tmp_path,
):
    first = Settings.from_env({"INSTANCE_PATH": str(tmp_path)})
    second = Settings.from_env({"INSTANCE_PATH": str(tmp_path)})

    key_file = tmp_path / "secret_key"
    assert len(first.secret_key) == 64
    assert second.secret_key == first.secret_key == key_file.read_text()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_the_generated_key_encrypts_token_secrets_for_every_process(tmp_path):
    """The web server, the worker and the CLI each read the settings anew."""
    environ = {"INSTANCE_PATH": str(tmp_path)}
    ciphertext = SecretBox.from_settings(Settings.from_env(environ)).encrypt("JBSW")

    assert SecretBox.from_settings(Settings.from_env(environ)).decrypt(ciphertext) == (
        "JBSW"
    )


def test_secret_key_from_the_environment_wins_and_writes_no_file(tmp_path):
    settings = Settings.from_env({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s"})

    assert (settings.secret_key, settings.encryption_key) == ("s", "s")
    assert not (tmp_path / "secret_key").exists()


def test_a_rotated_encryption_key_still_reads_what_the_former_one_wrote(tmp_path):
    base = {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s"}
    old = Settings.from_env({**base, "TOKEN_ENCRYPTION_KEY": "old-key"})
    ciphertext = SecretBox.from_settings(old).encrypt("JBSW")

    rotated = Settings.from_env(
        {
            **base,
            "TOKEN_ENCRYPTION_KEY": "new-key",
            "TOKEN_ENCRYPTION_PREVIOUS_KEYS": " older-key , old-key ,",
        }
    )

    assert rotated.token_encryption_previous_keys == ("older-key", "old-key")
    assert SecretBox.from_settings(rotated).decrypt(ciphertext) == "JBSW"


def test_an_unwritable_instance_folder_is_refused_with_what_to_do(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")

    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"INSTANCE_PATH": str(blocker / "instance")})

    assert str(caught.value) == (
        f"Cannot keep the generated secret key in {blocker / 'instance' / 'secret_key'}"
        ": Not a directory. Set SECRET_KEY in the environment, or INSTANCE_PATH to a "
        "folder this user may write."
    )


def test_an_empty_key_file_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "secret_key").write_text("\n")

    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"INSTANCE_PATH": str(tmp_path)})

    assert str(caught.value) == (
        f"The secret key file {tmp_path / 'secret_key'} is empty; delete it to have "
        "a new key generated, or set SECRET_KEY."
    )


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "MAX_UPLOAD_BYTES",
            "abc",
            "MAX_UPLOAD_BYTES='abc' is not a whole number; set it to an integer such "
            "as 2097152 or unset it to use the default.",
        ),
        (
            "EXPIRY_REPLACEMENT_DAYS",
            "-3",
            "EXPIRY_REPLACEMENT_DAYS='-3' must be greater than zero; set it to a "
            "whole number such as 30 or unset it to use the default.",
        ),
    ],
)
def test_a_bad_number_is_refused_with_the_variable_named(tmp_path, name, raw, message):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(
            {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s", name: raw}
        )

    assert str(caught.value) == message


@pytest.mark.parametrize("raw", ["2days", "P", "PT", "-P1D", "P0D"])
def test_a_timer_duration_that_is_no_iso_duration_is_refused(tmp_path, raw):
    environ = {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s", "REMINDER_AFTER": raw}

    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ)

    assert str(caught.value) == (
        f"REMINDER_AFTER={raw!r} is not an ISO 8601 duration; write it like P2D (two "
        "days), PT4H (four hours) or P1DT12H, or unset it to use P2D."
    )


def test_timer_durations_come_from_the_environment(tmp_path):
    settings = Settings.from_env(
        {
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": "s",
            "REMINDER_AFTER": "PT4H",
            "ESCALATE_AFTER": "P1DT12H",
            "AUTO_CANCEL_AFTER": "P2W",
        }
    )

    assert (
        settings.reminder_after,
        settings.escalate_after,
        settings.auto_cancel_after,
    ) == ("PT4H", "P1DT12H", "P2W")
