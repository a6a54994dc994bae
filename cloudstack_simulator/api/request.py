"""One authenticated request (``Call``) and the error answers commands raise."""

from __future__ import annotations

from dataclasses import dataclass

from cloudstack_simulator.state import Account, ApiKey
from sidecar.model.constants import HTTP_PARAM_ERROR

CS_SERVER_API = 9999
CS_INVALID_PARAMETER = 4350


class ApiError(Exception):
    """An error answer. ``server_api=False`` is the servlet's plain 401 (no ``cserrorcode``,
    no ``X-Description``), as when ``verifyRequest`` returns false."""

    def __init__(
        self,
        status: int,
        text: str,
        cserrorcode: int | None = CS_SERVER_API,
        *,
        server_api: bool = True,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.cserrorcode = cserrorcode if server_api else None
        self.server_api = server_api


def invalid(text: str) -> ApiError:
    """``InvalidParameterValueException`` as ``handleRequest`` wraps it: 431, 4350."""
    return ApiError(HTTP_PARAM_ERROR, text, CS_INVALID_PARAMETER)


@dataclass
class Call:
    """One authenticated request."""

    command: str
    params: dict[str, str]
    method: str
    key: ApiKey
    account: Account

    @property
    def short(self) -> str:
        """``getCommandName()`` minus ``response``: the lowercased command."""
        return self.command.lower()
