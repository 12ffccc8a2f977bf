"""The shared environment reader: defaults, the one-sentence refusals, and the same error class
for every service."""

from __future__ import annotations

import pytest

from services.backend.config import ConfigError as BackendConfigError
from services.common.settings import ConfigError, read_number
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
