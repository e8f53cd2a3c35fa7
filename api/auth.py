"""API keys: who is calling, or 401.

Keys are never stored or compared in clear: settings and the key file hold sha256 digests,
and the principal a request runs as is identified by a prefix of its key's digest (safe to
log and to use in Redis key names), with the name, role, namespaces and tenant of its entry
(`api.access`). The key file is re-read when it changes, so keys rotate without a restart.
With no key configured, only requests that arrive on a loopback interface are served, as one
admin: an API reachable from the network must have keys.
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

from api.access import LOCAL, Principal, parse_key_file, unscoped
from api.deps import StateDep
from shared.errors import AuthenticationError

logger = logging.getLogger(__name__)

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
    """The accepted keys: digests from settings (unscoped analysts), plus a key file re-read
    when it changes (see `api.access` for its formats)."""

    def __init__(self, static: list[str], path: str = ""):
        self.static = {d: unscoped(d) for d in static}
        self.path = Path(path) if path else None
        self._file_keys: dict[str, Principal] = {}
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
        try:
            keys = parse_key_file(self.path.read_text())
        except (OSError, ValueError) as exc:
            # A half-written or broken file must not open the API nor lock everyone out.
            logger.error("API key file not loaded; keeping the keys read before: %s", exc)
            return
        self._file_keys = keys
        self._stamp = stamp
        logger.info("API keys loaded from file", extra={"keys": len(keys)})

    def digests(self) -> frozenset[str]:
        self._refresh()
        return frozenset(self.static) | frozenset(self._file_keys)

    def principal(self, key: str | None) -> Principal | None:
        """The principal for `key`, or None when the key is not accepted."""
        if not key:
            return None
        candidate = digest(key)
        self._refresh()
        for accepted, principal in (*self.static.items(), *self._file_keys.items()):
            if hmac.compare_digest(candidate, accepted):
                return principal
        return None

    def still_valid(self, principal: Principal) -> bool:
        """Whether the key of `principal` is still accepted, with the same scope."""
        if principal is LOCAL:
            return True
        self._refresh()
        return any(p == principal for p in (*self.static.values(), *self._file_keys.values()))


API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (its sha256 digest is in API_KEYS)."
)
BEARER = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


async def authenticate(
    request: Request,
    state: StateDep,
    api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Principal:
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
    return LOCAL


PrincipalDep = Annotated[Principal, Depends(authenticate)]
