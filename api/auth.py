"""API keys: who is calling, or 401; and never open by accident.

Keys are never stored or compared in clear: settings and the key file hold sha256 digests,
and the principal a request runs as is identified by a prefix of its key's digest (safe to
log and to use in Redis key names), with the name, role, namespaces and tenant of its entry
(`api.access`). The key file is re-read when it changes, so keys rotate without a restart.

Fail closed: a configured key file that is empty, unreadable or unparsable refuses every
request (503) until it is fixed; without any key configured the API does not start, unless
no-auth mode is asked for explicitly (`API_NO_AUTH`), which it accepts only when it binds a
loopback address. The address a request arrives from or on never grants anything: a same-pod
proxy or a port-forward reaches a loopback interface too.
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

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.access import LOCAL, Principal, parse_key_file, unscoped
from api.deps import StateDep
from shared.errors import AuthenticationError, ConfigurationError, KeysUnavailableError
from shared.settings import Settings

logger = logging.getLogger(__name__)

FILE_RECHECK_S = 2.0


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def is_loopback(host: str) -> bool:
    """Whether binding `host` listens on loopback interfaces only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_mode(settings: Settings, bind_host: str | None) -> None:
    """Refuse to start an API that would serve without keys by accident.

    `bind_host` is the address the server binds (None: unknown, as under `uvicorn --factory`).
    Raises ConfigurationError saying what to set.
    """
    if settings.api_no_auth:
        if bind_host is None:
            raise ConfigurationError(
                "API_NO_AUTH=true is refused: start the API with `python -m api --host "
                "127.0.0.1` so that it knows it binds loopback only"
            )
        if not is_loopback(bind_host):
            raise ConfigurationError(
                f"API_NO_AUTH=true is refused: the API binds {bind_host}, not a loopback "
                "address; configure API_KEYS or API_KEYS_FILE instead"
            )
        if settings.api_keys or settings.api_keys_file:
            logger.warning("API_NO_AUTH is ignored: API keys are configured")
        return
    if not settings.api_keys and not settings.api_keys_file:
        raise ConfigurationError(
            "no API keys configured: set API_KEYS or API_KEYS_FILE (or, for local "
            "development on a loopback address only, API_NO_AUTH=true)"
        )


class KeyRing:
    """The accepted keys: digests from settings (unscoped analysts), plus a key file re-read
    when it changes (see `api.access` for its formats). With no key configured and
    `no_auth`, every caller is the one local admin."""

    def __init__(self, static: list[str], path: str = "", *, no_auth: bool = False):
        self.static = {d: unscoped(d) for d in static}
        self.path = Path(path) if path else None
        self.no_auth = no_auth and not static and self.path is None
        self._file_keys: dict[str, Principal] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._problem: str | None = None
        self._refresh()

    def _refresh(self) -> None:
        if self.path is None or (
            self._checked and time.monotonic() - self._checked < FILE_RECHECK_S
        ):
            return
        self._checked = time.monotonic()
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if stamp == self._stamp:
                return
            text = self.path.read_text()
        except OSError as exc:
            self._stamp = None
            self._unusable(f"cannot be read ({exc.strerror or exc})")
            return
        self._stamp = stamp
        try:
            keys = parse_key_file(text)
        except ValueError as exc:
            self._unusable(str(exc))
            return
        if not keys:
            self._unusable("holds no keys")
            return
        self._file_keys = keys
        self._problem = None
        logger.info("API keys loaded from file", extra={"keys": len(keys)})

    def _unusable(self, problem: str) -> None:
        # No key of a file we cannot read is trusted: neither the new ones nor the old ones
        # (one of those may be the key being revoked).
        self._file_keys = {}
        if problem != self._problem:
            logger.error(
                "API key file %s %s: every request is refused (503) until it is fixed",
                self.path,
                problem,
            )
        self._problem = problem

    def problem(self) -> str | None:
        """Why the configured key file cannot be used, or None when it can (or there is none)."""
        self._refresh()
        return self._problem

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
            return self.no_auth
        if self.problem() is not None:
            return False
        return any(p == principal for p in (*self.static.values(), *self._file_keys.values()))


API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (its sha256 digest is in API_KEYS)."
)
BEARER = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


async def authenticate(
    state: StateDep,
    api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Principal:
    """The caller's principal; raises AuthenticationError (401), or KeysUnavailableError (503)
    while the configured key file cannot be used."""
    keys = state.keys
    if keys.no_auth:
        return LOCAL
    if keys.problem() is not None:
        raise KeysUnavailableError(
            "the API's key file cannot be used: every request is refused until an operator fixes it"
        )
    principal = keys.principal(api_key or (bearer.credentials if bearer else None))
    if principal is None:
        raise AuthenticationError(
            "a valid API key is required (X-API-Key or Authorization: Bearer)"
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]
