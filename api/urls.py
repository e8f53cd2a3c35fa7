"""The URLs the API hands out (`status_url`, `events_url`, `Location`): under PUBLIC_URL when
it is set, else paths from the root; never built from the request's Host header, which any
client (or a proxy passing it through) chooses."""

from __future__ import annotations

from fastapi import Request

from shared.settings import Settings


def public_url(request: Request, settings: Settings, name: str, **params: str) -> str:
    """The URL of the route called `name` with `params`, as clients should use it."""
    path = str(request.app.url_path_for(name, **params))
    base = settings.public_url or str(request.scope.get("root_path", ""))
    return base.rstrip("/") + path
