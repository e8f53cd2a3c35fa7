"""The OpenAPI page (`/docs`): Swagger UI from the swagger-ui-bundle-v2 package, served by the
API itself under the web page's Content Security Policy. Nothing is loaded from elsewhere (the
page works offline, and a key typed into "Authorize" meets no outside script), and nothing is
inline: Swagger UI is started by `docs/init.js`, which reads the schema's URL from the page."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

from api.routes.ui import HEADERS
from shared.errors import NotFoundError

router = APIRouter(include_in_schema=False)
SWAGGER_DIR = Path(str(swagger_ui_path))
# The package's files the page uses (its source maps and standalone page are left out).
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
INIT_JS = """\
window.ui = SwaggerUIBundle({
  url: document.body.dataset.openapiUrl,
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
});
"""
PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="stylesheet" href="{root}/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="{root}/docs/favicon-32x32.png">
</head>
<body data-openapi-url="{root}{openapi}">
<div id="swagger-ui"></div>
<script src="{root}/docs/swagger-ui-bundle.js"></script>
<script src="{root}/docs/init.js"></script>
</body>
</html>
"""


@router.get("/docs")
async def docs_page(request: Request) -> HTMLResponse:
    root = html.escape(str(request.scope.get("root_path", "")).rstrip("/"))
    body = PAGE.format(
        title=html.escape(request.app.title),
        root=root,
        openapi=html.escape(request.app.openapi_url or "/openapi.json"),
    )
    return HTMLResponse(body, headers=HEADERS)


@router.get("/docs/init.js")
async def docs_init() -> Response:
    return Response(INIT_JS, media_type="text/javascript", headers=HEADERS)


@router.get("/docs/{name}")
async def docs_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFoundError(f"no such file: {name}")
    return FileResponse(SWAGGER_DIR / name, media_type=ASSETS[name], headers=HEADERS)
