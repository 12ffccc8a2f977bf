"""Request parameters of the REST API: the one place that turns query and form text into checked
values, and describes each parameter for the OpenAPI document from the same bounds, so the spec
at /api/spec.json says exactly what the code accepts. Every refusal is an `ApiError(400, sentence)`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from services.backend.errors import ApiError

# Words a yes/no form field or query flag may use (the spec declares them as booleans).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,30}")


def shown(raw: str) -> str:
    """A client's value as a message quotes it: at most 40 characters, control characters escaped."""
    return repr(raw[:40])


@dataclass(frozen=True)
class WholeNumber:
    """An integer parameter with inclusive bounds; blank or missing means `default`."""

    name: str
    minimum: int
    maximum: int
    default: int
    example: str

    def parse(self, raw: str | None) -> int:
        if raw is None:
            return self.default
        text = raw.strip()
        if not _WHOLE_NUMBER.fullmatch(text):
            raise ApiError(400, f"{self.name}={shown(raw)} is not a whole number; use e.g. {self.example}.")
        value = int(text)
        if not self.minimum <= value <= self.maximum:
            raise ApiError(400, f"{self.name}={text[:40]} is out of range; "
                                f"use a whole number from {self.minimum} to {self.maximum}.")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum, "default": self.default}

    def query(self, description: str) -> dict[str, Any]:
        """The OpenAPI query parameter."""
        return {"name": self.name, "in": "query", "description": description, "schema": self.schema()}


@dataclass(frozen=True)
class Flag:
    """A yes/no parameter: true/false, 1/0, yes/no or on/off; missing means false."""

    name: str

    def parse(self, raw: str | None) -> bool:
        if raw is None:
            return False
        value = raw.strip().lower()
        if value in TRUE_WORDS:
            return True
        if value in FALSE_WORDS:
            return False
        raise ApiError(400, f"{self.name}={shown(raw)} is not a yes/no value; use true or false.")

    @staticmethod
    def schema() -> dict[str, Any]:
        return {"type": "boolean", "default": False}

    def query(self, description: str) -> dict[str, Any]:
        return {"name": self.name, "in": "query", "description": description, "schema": self.schema()}


@dataclass(frozen=True)
class Measure:
    """A decimal parameter with inclusive bounds and a unit; blank or missing means `default`."""

    name: str
    minimum: float
    maximum: float
    default: float
    unit: str
    example: str

    def parse(self, raw: str | None, default: float | None = None) -> float:
        if raw is None or raw.strip() == "":
            return self.default if default is None else default
        try:
            value = float(raw)
        except ValueError:
            raise ApiError(400, f"{self.name}={shown(raw)} is not a number; give {self.unit}, e.g. {self.example}.") \
                from None
        if not math.isfinite(value) or value <= 0:
            raise ApiError(400, f"{self.name} must be a positive number of {self.unit}, not {shown(raw)}.")
        if not self.minimum <= value <= self.maximum:
            raise ApiError(
                400,
                f"{self.name}={value:g} is implausible: use {self.minimum:g} to {self.maximum:g} {self.unit} "
                f"(check the unit, e.g. {self.example}).",
            )
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.minimum, "maximum": self.maximum, "default": self.default}


# -- the API's parameters -----------------------------------------------------------------------

LIMIT = WholeNumber("limit", 1, 500, 50, "50")
# Far beyond any instance's job count, far below the database's 64-bit OFFSET.
OFFSET = WholeNumber("offset", 0, 1_000_000_000, 0, "0 for the newest jobs")
IMAGE = WholeNumber("image", 0, 999_999, 0, "0 for the first image")
PRIORITY = WholeNumber("priority", -1000, 1000, 0, "0 (normal) or 10 (urgent)")
INCLUDE_SYNTHETIC = Flag("include_synthetic")
TRAINING = Flag("training")
SYNTHETIC = Flag("synthetic")
INPUTS = Flag("inputs")
ALL = Flag("all")
# A physically sensible range: no microscope camera images islets at 50 nm or 20 µm per pixel
# (a value outside it was typed in the wrong unit, and would give 0 islets or overflow).
PIXEL_SIZE = Measure("pixel_size_um", 0.05, 20.0, 0.843, "micrometres per pixel", "0.843")
