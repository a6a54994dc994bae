"""Who may call what: API keys, ``ApiServer.verifyRequest`` and the 4.21+ POST enforcement."""

from __future__ import annotations

import secrets

from cloudstack_simulator.api import COMMANDS, ApiError
from cloudstack_simulator.context import Context
from cloudstack_simulator.state import Account, ApiKey
from cloudstack_simulator.verify import parse_tz_date, signature_matches
from sidecar.model.constants import STATE_CHANGING_PREFIXES_READ, UNAUTHORIZED_TEXT

#: How far ahead a signature-version-3 ``expires`` may be while POST is enforced (seconds).
MAX_EXPIRES_AHEAD = 15 * 60


def add_key(
    ctx: Context,
    role: set[str] | frozenset[str] | None = None,
    *,
    key: str | None = None,
    secret: str | None = None,
    account: str = "admin",
) -> tuple[str, str]:
    """A new API key pair; ``role`` = the APIs it may call (None = every API)."""
    pair = ApiKey(
        key=key or secrets.token_urlsafe(64),
        secret=secret or secrets.token_urlsafe(64),
        account=account,
        role=None if role is None else frozenset(role),
    )
    with ctx.lock:
        ctx.state.keys[pair.key] = pair
    return pair.key, pair.secret


def check_method(command: str | None, method: str, *, enforce_post: bool) -> None:
    """4.21+ with enforcement on: a state-changing command sent by GET gets 400."""
    if (
        enforce_post
        and method != "POST"
        and command in COMMANDS
        and not command.startswith(STATE_CHANGING_PREFIXES_READ)
    ):
        raise ApiError(
            400,
            f"State changing command {command} needs to be sent using POST request",
            server_api=False,
        )


def authenticate(
    ctx: Context, params: dict[str, str], *, enforce_post: bool
) -> tuple[ApiKey, Account]:
    """``ApiServer.verifyRequest``, in upstream's order of checks."""
    plain = ApiError(401, UNAUTHORIZED_TEXT, server_api=False)
    command = params.get("command")
    if command is None or command not in COMMANDS:
        raise plain
    signature = api_key = version = expires = None
    for name in sorted(params):
        lowered = name.lower()
        if lowered == "signature":
            signature = params[name]
        elif lowered == "apikey":
            api_key = params[name]
        elif lowered == "signatureversion":
            version = params[name]
        elif lowered == "expires":
            expires = params[name]
    if signature is None or api_key is None:
        raise plain
    if version == "3":
        if expires is None:
            raise plain
        moment = parse_tz_date(expires)
        if moment is None or moment.timestamp() < ctx.clock.time():
            raise plain
        if enforce_post and moment.timestamp() > ctx.clock.time() + MAX_EXPIRES_AHEAD:
            raise plain
    elif enforce_post:
        raise plain
    with ctx.lock:
        pair = ctx.state.keys.get(api_key)
        account = ctx.state.accounts.get(pair.account) if pair else None
    if pair is None or account is None or not pair.enabled:
        raise plain
    if pair.role is not None and command not in pair.role:
        # checkCommandAvailable runs before the signature check.
        raise ApiError(
            401,
            f"The given command '{command}' either does not exist, is not available for user.",
        )
    if not signature_matches(params, pair.secret):
        raise plain
    return pair, account
