"""Whether the LLM server's address stays inside the cluster: the prompt (redacted evidence
templates and examples) is sent there, so a server elsewhere needs LLM_ALLOW_REMOTE.

The rule looks at the URL only and never resolves a name (an answer could change between
the check and the request). In the cluster:
- IP literals in loopback, private (RFC 1918, IPv6 unique-local fc00::/7), shared
  (100.64.0.0/10, used by some pod networks) and link-local ranges, also written as
  IPv4-mapped IPv6 or in the legacy forms `127.1`, `0x7f000001`, `2130706433`;
- names with one label (`llama`, a Service or compose name in the same namespace),
  `localhost` and `*.localhost`, and the names of suffixes meant for private use:
  `*.svc` and `*.cluster.local` (Kubernetes), `*.internal` (ICANN private use),
  `*.home.arpa` (RFC 8375), `*.local` (mDNS, the local link).
Everything else is remote, including unspecified (`0.0.0.0`, `::`), multicast, documentation
and public addresses, and names with a dot that end otherwise (`llm.example.com`,
`10.0.0.1.nip.io`). The port does not matter.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from shared.errors import ConfigurationError

_CLUSTER_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)
_CLUSTER_SUFFIXES = (".svc", ".cluster.local", ".internal", ".home.arpa", ".local", ".localhost")


class RemoteLlmError(ConfigurationError):
    """Raised when the LLM server is outside the cluster and LLM_ALLOW_REMOTE is off, or its
    URL cannot be judged."""

    code = "llm_remote_refused"


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`host` as an address if it is one, in any form a resolver would read as one."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # without an IPv6 zone (`%eth0`)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host):
        # `127.1`, `0x7f.1`, `2130706433`: the C resolver takes these as IPv4 addresses.
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def host_in_cluster(host: str) -> bool:
    """True if `host` (a name or an address, without port) is inside the cluster by the rule
    in this module's docstring."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        return False
    address = _ip(host)
    if address is not None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in _CLUSTER_NETWORKS if net.version == address.version)
    if ":" in host:
        return False  # neither an address nor a name
    return "." not in host or host == "localhost" or host.endswith(_CLUSTER_SUFFIXES)


def check_llm_url(url: str, *, allow_remote: bool) -> None:
    """Raise RemoteLlmError unless `url` is an http(s) URL of a server inside the cluster,
    or `allow_remote` is set."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise RemoteLlmError(f"LLAMA_URL is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise RemoteLlmError("LLAMA_URL must be an http:// or https:// URL with a host")
    if allow_remote or host_in_cluster(host):
        return
    raise RemoteLlmError(
        f"LLAMA_URL points outside the cluster ({host}): the prompt, with redacted log "
        "templates and examples, would leave it. Set LLM_ALLOW_REMOTE=true to allow that, "
        "or use a server in the cluster."
    )
