"""Errors raised by the islet measurement library. Each message is one plain sentence that says
what is wrong and, where the user can act, what to do; callers show ``str(error)`` as it is."""

from __future__ import annotations


class IsletsError(Exception):
    """Root of every error this library raises on purpose."""


class InvalidImageError(IsletsError, ValueError):
    """The uploaded bytes are not an image this library can analyse (wrong type, truncated,
    too large, no pixels)."""


class UnknownModelError(IsletsError, ValueError):
    """A model name that is neither built in nor found in the models directory."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = list(known)
        super().__init__(f"Unknown model '{name}'; the known models are: {', '.join(self.known)}.")


class ModelError(IsletsError, RuntimeError):
    """A model could not be loaded or failed while predicting."""


class InvalidParameterError(IsletsError, ValueError):
    """A measurement parameter (pixel size, minimum diameter, class map) is out of range."""
