"""The error family shared by the IsletNet services.

Every expected failure of an outside system is a `ServiceError` whose message is one plain
sentence (what is wrong and what to do); the backend turns it into a JSON error, the workers
log it. `Unavailable` marks the ones worth retrying later (503 + Retry-After in the API).
"""

from __future__ import annotations


class ServiceError(Exception):
    """A failure with a one-sentence message that can be shown to a user or an operator."""


class Unavailable(ServiceError):
    """An outside system (storage, queue) cannot be reached right now; retrying later may work."""
