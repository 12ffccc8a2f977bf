"""The one error family of isletops and the exit codes the CLI returns.

Every expected failure is an `IsletOpsError` whose message is one plain sentence saying what is
wrong and what to do; `cli` prints it and exits with `exit_status`. Anything else is a bug and
goes to the debug log with its traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Exit codes, Nagios-compatible so cron and monitoring systems understand them."""

    OK = 0
    WARNING = 1
    CRITICAL = 2  # also: the command failed
    UNKNOWN = 3
    INTERRUPTED = 130  # Ctrl-C


class IsletOpsError(Exception):
    """A failure the user can act on. `str(error)` is the sentence the CLI shows."""

    exit_status: ExitStatus = ExitStatus.CRITICAL

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigError(IsletOpsError):
    """The site config or env file is missing, malformed or incomplete."""


class TagError(IsletOpsError):
    """A release tag is malformed."""


class RegistryError(IsletOpsError):
    """The image registry is unreachable or lacks an image."""


class DockerError(IsletOpsError):
    """Docker Engine or compose failed."""


class LockError(IsletOpsError):
    """Another deploy holds the instance lock."""


class DeployError(IsletOpsError):
    """A deploy or rollback failed (after rolling back where possible)."""


class ProvisionError(IsletOpsError):
    """Host provisioning failed."""


class ProbeError(IsletOpsError):
    """A probe could not run at all (reported as UNKNOWN)."""

    exit_status = ExitStatus.UNKNOWN
