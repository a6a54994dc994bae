"""Errors a user can fix; the CLI prints their one-line message and exits with their code."""

from __future__ import annotations


class UserError(Exception):
    """A problem with input or environment that the user can fix (no traceback shown)."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(UserError):
    """Malformed, unknown or out-of-range configuration."""


class LedgerUnavailable(UserError):
    """The ledger database cannot be opened or written."""

    exit_code = 4
