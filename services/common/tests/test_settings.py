"""The shared environment reader: defaults, the one-sentence refusals, and the same error class
for every service."""

from __future__ import annotations

import pytest

from services.backend.config import ConfigError as BackendConfigError
from services.common.settings import ConfigError, read_number, read_secret
from services.pruner.status import PrunerConfigError
from services.shepherd.config import ConfigError as ShepherdConfigError


@pytest.mark.parametrize("env", [{}, {"LEASE_SECONDS": ""}, {"LEASE_SECONDS": "  "}])
def test_unset_or_blank_gives_the_default(env: dict[str, str]) -> None:
    assert read_number(env, "LEASE_SECONDS", 60, minimum=1) == 60.0


def test_values_are_read_as_floats() -> None:
    assert read_number({"X": " 2.5 "}, "X", 1, minimum=0) == 2.5
    assert read_number({"X": "0"}, "X", 1, minimum=0) == 0.0


@pytest.mark.parametrize("raw", ["soon", "nan", "inf", "-inf", "1,5"])
def test_non_numbers_and_infinity_are_refused_in_one_sentence(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_number({"RETENTION_SECONDS": raw}, "RETENTION_SECONDS", 60, minimum=0, unit="seconds")
    assert str(caught.value) == (
        f"RETENTION_SECONDS={raw!r} is not a number of seconds; set it to a number of seconds of at least 0."
    )


def test_below_the_minimum_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^WORKERS must be at least 1, got 0\.$"):
        read_number({"WORKERS": "0"}, "WORKERS", 1, minimum=1)


def test_every_service_raises_the_same_error_class() -> None:
    assert BackendConfigError is ConfigError
    assert ShepherdConfigError is ConfigError
    assert PrunerConfigError is ConfigError


def test_secret_from_a_file_when_the_value_is_unset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "DB_PASSWORD"
    secret.write_text("s3cret\n")
    assert read_secret({"DB_PASSWORD_FILE": str(secret)}, "DB_PASSWORD") == "s3cret"
    assert read_secret({"DB_PASSWORD": "value", "DB_PASSWORD_FILE": str(secret)}, "DB_PASSWORD") == "value"
    assert read_secret({}, "DB_PASSWORD") == ""


def test_unreadable_secret_file_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="DB_PASSWORD_FILE names .*missing, which cannot be read"):
        read_secret({"DB_PASSWORD_FILE": str(tmp_path / "missing")}, "DB_PASSWORD")


def test_queue_and_store_read_their_secrets_from_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.common.database import JobDatabase
    from services.common.storage import ObjectStore

    (tmp_path / "url").write_text("postgresql://u:p@h:5432/d")
    assert JobDatabase.from_env({"DATABASE_URL_FILE": str(tmp_path / "url")}).database_url == "postgresql://u:p@h:5432/d"
    (tmp_path / "key").write_text("AK")
    store = ObjectStore.from_env({"S3_ENDPOINT_URL": "http://127.0.0.1:1", "S3_ACCESS_KEY_FILE": str(tmp_path / "key"),
                                  "S3_SECRET_KEY": "sk"})
    credentials = store._client._request_signer._credentials  # noqa: SLF001 - what boto signs with
    assert (credentials.access_key, credentials.secret_key) == ("AK", "sk")
