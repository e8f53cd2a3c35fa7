"""HTTP traffic shared by the cases: requests drawn once, then logged at each tier."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eval.incidents.builder import Builder
from eval.incidents.formats import envoy_access, gunicorn_access, nginx_access

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "ShopApp/5.12.0 (iPhone; iOS 18.1; Scale/3.00)",
    "ShopApp/5.11.2 (Android 14; Pixel 8)",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
)
PROBE_UA = "kube-probe/1.30"


@dataclass(frozen=True, slots=True)
class Route:
    """An endpoint: method, path template (`{id}`, `{sku}`, `{uuid}`), share, typical cost."""

    method: str
    path: str
    weight: float = 1.0
    ms: float = 25.0
    size: int = 1500


@dataclass(slots=True)
class Request:
    """One request as every tier sees it; cases change `status` and `ms` for failures."""

    t: float
    route: Route
    path: str
    status: int
    ms: float
    size: int
    rid: str
    ip: str
    ua: str

    @property
    def method(self) -> str:
        return self.route.method


def fill_path(b: Builder, template: str) -> str:
    """Replace the placeholders of a path template with random values."""
    path = template
    if "{id}" in path:
        path = path.replace("{id}", str(b.rng.randrange(1000, 99999)))
    if "{sku}" in path:
        path = path.replace("{sku}", f"SKU-{b.rng.randrange(10000, 99999)}")
    if "{uuid}" in path:
        path = path.replace("{uuid}", b.uuid())
    return path


def requests(
    b: Builder, lo: float, hi: float, rate: float, routes: Sequence[Route]
) -> list[Request]:
    """Poisson requests over ``[lo, hi)`` spread over `routes` by weight."""
    cum = list(itertools.accumulate(r.weight for r in routes))
    clients = [b.pod_ip() for _ in range(12)]
    return [
        request_at(b, t, b.rng.choices(routes, cum_weights=cum)[0], b.rng.choice(clients))
        for t in b.poisson(lo, hi, rate)
    ]


def request_at(b: Builder, t: float, route: Route, ip: str = "10.244.0.1") -> Request:
    """One successful request to `route` at `t`."""
    return Request(
        t=t,
        route=route,
        path=fill_path(b, route.path),
        status=200 if route.method == "GET" else b.rng.choice((200, 200, 201)),
        ms=route.ms * b.rng.lognormvariate(0, 0.45),
        size=int(route.size * b.rng.uniform(0.6, 1.5)),
        rid=b.uuid(),
        ip=ip,
        ua=b.rng.choice(USER_AGENTS),
    )


def spread(reqs: Sequence[Request], pods: Sequence[str]) -> list[tuple[str, Request]]:
    """Round-robin the requests over `pods` (as a Service would, near enough)."""
    return [(pods[i % len(pods)], r) for i, r in enumerate(reqs)]


def log_nginx(b: Builder, pod: str, container: str, reqs: Sequence[Request], upstream: str) -> None:
    """The requests in an nginx reverse proxy's access log."""
    for r in reqs:
        failed = r.status >= 500
        body = 150 if failed else r.size
        b.log(
            pod,
            container,
            r.t + r.ms / 1000,
            nginx_access(
                b.at(r.t + r.ms / 1000),
                ip=r.ip,
                method=r.method,
                path=r.path,
                status=r.status,
                size=body,
                ua=r.ua,
                seconds=(r.ms + 0.4) / 1000,
                upstream=upstream,
                upstream_seconds=r.ms / 1000,
            ),
        )


def envoy_flags(status: int) -> str:
    """Plausible response flags for a status Envoy produced itself."""
    return {503: "UF", 504: "UT", 502: "UC"}.get(status, "-")


def log_envoy(
    b: Builder,
    pod: str,
    reqs: Sequence[Request],
    authority: str,
    upstream_host: Callable[[Request], str],
    *,
    container: str = "envoy",
    flags: Callable[[Request], str] | None = None,
) -> None:
    """The requests in an Envoy gateway's access log."""
    for r in reqs:
        end = r.t + r.ms / 1000
        flag = flags(r) if flags else "-"
        envoy_made = flag != "-"
        b.log(
            pod,
            container,
            end,
            envoy_access(
                b.at(end),
                method=r.method,
                path=r.path,
                status=r.status,
                flags=flag,
                received=0 if r.method == "GET" else b.rng.randrange(80, 900),
                sent=91 if envoy_made else (r.size if r.status < 400 else 120),
                ms=int(r.ms) + 1,
                upstream_ms=None if envoy_made else int(r.ms),
                client=r.ip,
                ua=r.ua,
                request_id=r.rid,
                authority=authority,
                upstream_host="-" if envoy_made and flag == "UH" else upstream_host(r),
            ),
        )


def log_gunicorn(b: Builder, pod: str, container: str, reqs: Sequence[Request]) -> None:
    """The requests in gunicorn's access log."""
    for r in reqs:
        end = r.t + r.ms / 1000
        b.log(
            pod,
            container,
            end,
            gunicorn_access(
                b.at(end),
                ip=r.ip,
                method=r.method,
                path=r.path,
                status=r.status,
                size=r.size if r.status < 400 else 265,
                ua=r.ua,
            ),
        )


def log_probes(
    b: Builder,
    pod: str,
    container: str,
    lo: float,
    hi: float,
    every: float,
    line: Callable[[float], str],
    *,
    restart: int = 0,
) -> None:
    """A probe (or any periodic line) every `every` seconds over ``[lo, hi)``."""
    for t in b.ticks(lo, hi, every, jitter=0.02):
        b.log(pod, container, t, line(t), restart=restart)


def probe_access(b: Builder, kubelet_ip: str, path: str = "/healthz") -> Callable[[float], str]:
    """A kube-probe request in gunicorn/nginx combined format."""

    def line(t: float) -> str:
        return gunicorn_access(
            b.at(t), ip=kubelet_ip, method="GET", path=path, status=200, size=2, ua=PROBE_UA
        )

    return line
