"""API keys: who is calling, or 401.

Keys are never stored or compared in clear: settings and the key file hold sha256 digests,
and the principal a request runs as is a prefix of its key's digest (safe to log and to use
in Redis key names). The key file is re-read when it changes, so keys rotate without a
restart. With no key configured, only requests that arrive on a loopback interface are
served: an API reachable from the network must have keys.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import time
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.deps import StateDep
from shared.errors import AuthenticationError

logger = logging.getLogger(__name__)

LOCAL_PRINCIPAL = "local"
FILE_RECHECK_S = 2.0


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def arrived_on_loopback(request: Request) -> bool:
    server = request.scope.get("server")
    if not server:
        return False
    try:
        return ipaddress.ip_address(server[0]).is_loopback
    except ValueError:
        return False


class KeyRing:
    """The accepted key digests: from settings, plus a file re-read when it changes."""

    def __init__(self, static: list[str], path: str = ""):
        self.static = frozenset(static)
        self.path = Path(path) if path else None
        self._file_keys: frozenset[str] = frozenset()
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0

    def _refresh(self) -> None:
        if self.path is None or time.monotonic() - self._checked < FILE_RECHECK_S:
            return
        self._checked = time.monotonic()
        try:
            stat = os.stat(self.path)
        except OSError:
            if self._file_keys:
                logger.warning("API key file vanished; keeping the keys read before")
            return
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp:
            return
        lines = self.path.read_text().splitlines()
        keys = {
            line.strip().lower()
            for line in lines
            if line.strip() and not line.lstrip().startswith("#")
        }
        self._file_keys = frozenset(k for k in keys if len(k) == 64)
        self._stamp = stamp
        logger.info("API keys loaded from file", extra={"keys": len(self._file_keys)})

    def digests(self) -> frozenset[str]:
        self._refresh()
        return self.static | self._file_keys

    def principal(self, key: str | None) -> str | None:
        """The principal for `key`, or None when the key is not accepted."""
        if not key:
            return None
        candidate = digest(key)
        for accepted in self.digests():
            if hmac.compare_digest(candidate, accepted):
                return candidate[:16]
        return None


API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (its sha256 digest is in API_KEYS)."
)
BEARER = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


async def authenticate(
    request: Request,
    state: StateDep,
    api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> str:
    """The caller's principal; raises AuthenticationError (401)."""
    keys = state.keys
    if keys.digests():
        principal = keys.principal(api_key or (bearer.credentials if bearer else None))
        if principal is None:
            raise AuthenticationError(
                "a valid API key is required (X-API-Key or Authorization: Bearer)"
            )
        return principal
    if not arrived_on_loopback(request):
        raise AuthenticationError(
            "this API is reachable from the network and has no API keys "
            "configured: set API_KEYS or API_KEYS_FILE"
        )
    return LOCAL_PRINCIPAL


PrincipalDep = Annotated[str, Depends(authenticate)]
