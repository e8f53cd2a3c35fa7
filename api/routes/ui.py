"""The web page: static files served by the API itself, under a strict Content Security
Policy (no inline script or style; log text is only ever set as text by `app.js`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from shared.errors import NotFoundError

router = APIRouter(include_in_schema=False)
UI_DIR = Path(__file__).resolve().parent.parent / "ui"
FILES = {"app.js": "text/javascript", "app.css": "text/css", "index.html": "text/html"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui/")
async def page() -> FileResponse:
    # The page holds no data: it asks for a key, and every call it makes is checked.
    return FileResponse(UI_DIR / "index.html", media_type=FILES["index.html"], headers=HEADERS)


@router.get("/ui/{name}")
async def asset(name: str) -> FileResponse:
    if name not in FILES:
        raise NotFoundError(f"no such file: {name}")
    return FileResponse(UI_DIR / name, media_type=FILES[name], headers=HEADERS)
