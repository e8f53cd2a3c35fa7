"""Fixtures: stub upstreams, a private Redis, and a real API and Celery worker.

Helpers live in `tests/support/` (importable by tests and benchmarks); this module only
wires them into fixtures. Stub state is reset for every test that takes a stub.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.harness import Harness, RedisServer
from tests.stubs.llama_stub import LlamaStub, start_llama_stub
from tests.stubs.loki_stub import LokiStub, start_loki_stub
from tests.stubs.otlp_receiver import OtlpReceiver, start_otlp_receiver
from tests.stubs.server import ThreadedServer
from tests.support.incident import push_incident
from tests.support.stack import ServiceStack, build_stack

# In-process apps built by unit tests must not try to reach Tempo; the integration stack
# turns tracing on explicitly for its own processes.
os.environ.setdefault("OTEL_SDK_DISABLED", "true")


@pytest.fixture(scope="session")
def session_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = Harness(tmp_path_factory.mktemp("session"))
    yield harness
    harness.stop()


@pytest.fixture(scope="session")
def redis_server(session_harness: Harness) -> RedisServer:
    """A private redis-server for tests that need a plain Redis (job store, access)."""
    return session_harness.start_redis()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A flushed database on the private server, flushed again afterwards."""
    url = redis_server.url(1)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[tuple[LlamaStub, ThreadedServer]]:
    stub, server = start_llama_stub()
    yield stub, server
    server.stop()


@pytest.fixture(autouse=True)
def clean_stubs(
    llama_server: tuple[LlamaStub, ThreadedServer], loki_server: LokiStub
) -> Iterator[None]:
    """Every test starts with the stubs' default behaviour, whatever the last one changed."""
    llama_server[0].reset()
    loki_server.clear_faults()
    yield
    llama_server[0].reset()
    loki_server.clear_faults()


@pytest.fixture
def llama(llama_server: tuple[LlamaStub, ThreadedServer]) -> LlamaStub:
    return llama_server[0]


@pytest.fixture(scope="session")
def otlp_server() -> Iterator[tuple[OtlpReceiver, ThreadedServer]]:
    receiver, server = start_otlp_receiver()
    yield receiver, server
    server.stop()


@pytest.fixture(scope="session")
def loki_server() -> Iterator[LokiStub]:
    stub = start_loki_stub()
    push_incident(stub.url)
    yield stub
    stub.stop()


@pytest.fixture
def loki(loki_server: LokiStub) -> LokiStub:
    return loki_server


@pytest.fixture(scope="session")
def stack(
    llama_server: tuple[LlamaStub, ThreadedServer],
    loki_server: LokiStub,
    otlp_server: tuple[OtlpReceiver, ThreadedServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceStack]:
    """API and worker processes that export their traces to a real OTLP/HTTP receiver."""
    stub, llama_http = llama_server
    service = build_stack(
        tmp_path_factory.mktemp("services"),
        llama=stub,
        llama_url=llama_http.url,
        loki=loki_server,
        OTEL_SDK_DISABLED="false",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_server[1].url,
    )
    service.otlp = otlp_server[0]
    try:
        service.start_worker()
        service.start_api()
        service.wait_ready()
        yield service
    finally:
        service.close()


@pytest.fixture
def running_stack(fresh_stack: ServiceStack) -> ServiceStack:
    """A stack of the test's own with a worker (both queues) and the API, ready."""
    fresh_stack.start_worker()
    fresh_stack.start_api()
    fresh_stack.wait_ready()
    return fresh_stack


@pytest.fixture
def fresh_stack(
    llama: LlamaStub,
    llama_server: tuple[LlamaStub, ThreadedServer],
    loki: LokiStub,
    tmp_path: Path,
) -> Iterator[ServiceStack]:
    """A stack of the test's own (nothing started yet), torn down after the test."""
    service = build_stack(tmp_path, llama=llama, llama_url=llama_server[1].url, loki=loki)
    try:
        yield service
    except BaseException:
        print(service.logs())
        raise
    finally:
        service.close()
