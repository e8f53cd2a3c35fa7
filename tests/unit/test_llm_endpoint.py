"""Which LLM servers the prompt may go to without LLM_ALLOW_REMOTE (workers.llm.endpoint)."""

from __future__ import annotations

import pytest

from shared.errors import ConfigurationError
from workers.llm.endpoint import RemoteLlmError, check_llm_url, host_in_cluster

IN_CLUSTER = [
    # Loopback, any form.
    "127.0.0.1",
    "127.8.9.10",
    "localhost",
    "LOCALHOST.",
    "llama.localhost",
    "::1",
    "[::1]",
    "127.1",  # the C resolver's short form
    "0x7f000001",
    "2130706433",
    # Private, shared (CGNAT pod networks), link-local.
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.20",
    "100.64.0.1",
    "100.127.255.254",
    "169.254.169.254",
    "fd00::1",
    "fc12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "::ffff:10.1.2.3",
    "::ffff:127.0.0.1",
    # Cluster and private-use names.
    "llama",
    "llama-cpp",
    "llama-cpp.llm.svc",
    "llama-cpp.llm.svc.cluster.local",
    "llama-cpp.llm.svc.cluster.local.",
    "vllm.ai.svc.cluster.local",
    "ollama.internal",
    "gpu-box.home.arpa",
    "gpu-box.local",
]

REMOTE = [
    "8.8.8.8",
    "1.1.1.1",
    "172.32.0.1",  # just past 172.16.0.0/12
    "172.15.255.255",
    "192.169.0.1",
    "100.128.0.1",  # just past 100.64.0.0/10
    "11.0.0.1",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "255.255.255.255",
    "2001:4860:4860::8888",
    "[2606:4700:4700::1111]",
    "::ffff:8.8.8.8",
    "2001:db8::1",
    "134744072",  # 8.8.8.8 as one number
    "0x08080808",
    "api.openai.com",
    "openrouter.ai",
    "llm.example.com",
    "10.0.0.1.nip.io",  # a public name that resolves to a private address
    "localhost.example.com",
    "svc.example.com",
    "cluster.local.evil.com",
    "",
    "[]",
]


@pytest.mark.parametrize("host", IN_CLUSTER)
def test_hosts_in_the_cluster(host: str) -> None:
    assert host_in_cluster(host)


@pytest.mark.parametrize("host", REMOTE)
def test_hosts_outside_the_cluster(host: str) -> None:
    assert not host_in_cluster(host)


@pytest.mark.parametrize(
    "url",
    [
        "http://llama-cpp.llm.svc.cluster.local:8080",
        "http://127.0.0.1:8080/",
        "https://[::1]:8443",
        "http://[fd00::5]:11434",
        "http://ollama:11434",
        "http://user:pass@10.0.0.7:8000/v1",
        "HTTP://LLAMA:8080",
        "http://192.168.1.20",
    ],
)
def test_urls_in_the_cluster_pass_whatever_the_port(url: str) -> None:
    check_llm_url(url, allow_remote=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com",
        "https://api.openai.com:443/v1",
        "http://8.8.8.8:8080",
        "http://[2001:4860:4860::8888]:80",
        "http://10.0.0.1.nip.io:8080",
        "http://llama-cpp.llm.svc.cluster.local@evil.example.com:8080",  # userinfo, not host
    ],
)
def test_urls_outside_the_cluster_are_refused_with_what_to_do(url: str) -> None:
    with pytest.raises(RemoteLlmError) as caught:
        check_llm_url(url, allow_remote=False)
    assert "LLM_ALLOW_REMOTE=true" in caught.value.message
    assert caught.value.code == "llm_remote_refused"
    assert isinstance(caught.value, ConfigurationError)
    check_llm_url(url, allow_remote=True)  # allowed on purpose


@pytest.mark.parametrize(
    "url",
    ["llama:8080", "ftp://127.0.0.1", "http://", "http://127.0.0.1:port", "file:///tmp/x", ""],
)
def test_urls_that_cannot_be_judged_are_refused_even_when_remote_is_allowed(url: str) -> None:
    with pytest.raises(RemoteLlmError, match="LLAMA_URL"):
        check_llm_url(url, allow_remote=True)
