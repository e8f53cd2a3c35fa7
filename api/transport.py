"""Reach the TCP transport under an ASGI request, to drop a client that stopped reading.

ASGI gives an app no way to abort a connection: when a response ends early uvicorn closes the
transport gracefully, which waits for its write buffer to reach the client; a client that never
reads then keeps the socket (and up to tcp_wmem of kernel memory) for as long as it likes.
uvicorn's `send` is a method of the request's cycle, which holds the transport; the app's
outermost `__call__` (api.main.Api) records it in the scope before any middleware wraps `send`.
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request
from starlette.types import Scope, Send

SCOPE_KEY = "log_analyzer.transport"


class Transport(Protocol):
    """What is used of an asyncio (or uvloop, which does not subclass asyncio's) transport."""

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...

    def get_write_buffer_limits(self) -> tuple[int, int]: ...

    def abort(self) -> None: ...


def _is_transport(value: Any) -> bool:
    return all(callable(getattr(value, name, None)) for name in ("abort", "get_write_buffer_size"))


def remember_transport(scope: Scope, send: Send) -> None:
    """Record the transport behind `send` (uvicorn's) in `scope`; other servers: nothing."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if _is_transport(transport):
        scope[SCOPE_KEY] = transport


def transport_of(request: Request) -> Transport | None:
    """The transport `remember_transport` recorded for this request, if any."""
    found: Any = request.scope.get(SCOPE_KEY)
    return found if _is_transport(found) else None


def abort_if_stuck(transport: Transport | None) -> bool:
    """Abort the connection when its write buffer is above the high-water mark (writes are
    paused: the client is not reading); True if it was aborted."""
    if transport is None or transport.is_closing():
        return False
    _, high = transport.get_write_buffer_limits()
    if transport.get_write_buffer_size() <= high:
        return False
    transport.abort()
    return True
