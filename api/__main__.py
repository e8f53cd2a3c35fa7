"""`python -m api --host 127.0.0.1 --port 8000`: run the API under uvicorn, telling the app
the address it binds, which no-auth mode (`API_NO_AUTH`) requires to be loopback. Deployments
with keys may run `uvicorn --factory api.main:app_factory` just as well."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from api.main import create_app
from shared.errors import ConfigurationError


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--timeout-graceful-shutdown", type=int, default=20, help="seconds open streams get"
    )
    args = parser.parse_args(argv)
    try:
        app = create_app(bind_host=args.host)
    except ConfigurationError as exc:
        raise SystemExit(f"log-analyzer API not started: {exc.message}") from None
    # The app configured logging (JSON on stderr): uvicorn keeps its hands off it.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=args.timeout_graceful_shutdown,
        log_config=None,
    )


if __name__ == "__main__":
    main()
