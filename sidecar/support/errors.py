"""Errors a user can fix; the CLI prints their one-line message and exits with their code."""

from __future__ import annotations

#: Exit codes of every command (documented in the README); 1 is each command's own "ran, but
#: found a problem" (incomplete cleanup, failed check, failed cycle), 3 is report's "duplicates".
EXIT_USAGE = 2
"""Bad input or environment: a flag, a setting, a file, an unsupported release."""
EXIT_LEDGER = 4
"""The ledger database cannot be opened or written."""
EXIT_CLOUDSTACK = 5
"""A CloudStack call failed: unreachable, refused credentials, an API error."""


class UserError(Exception):
    """A problem with input or environment that the user can fix (no traceback shown)."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(UserError):
    """Malformed, unknown or out-of-range configuration."""


class CloudDbUnavailable(UserError):
    """CloudStack's own database (``cloud_db_url``) cannot be reached or read."""

    exit_code = EXIT_CLOUDSTACK


class LedgerUnavailable(UserError):
    """The ledger database cannot be opened or written."""

    exit_code = EXIT_LEDGER
