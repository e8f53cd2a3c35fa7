"""Dropping a client that stopped reading: abort only a connection whose writes are paused."""

from __future__ import annotations

from typing import Any

from api.transport import SCOPE_KEY, abort_if_stuck, remember_transport


class FakeTransport:
    def __init__(self, buffered: int, high: int = 65536):
        self.buffered = buffered
        self.high = high
        self.aborted = False

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self.high // 4, self.high)

    def abort(self) -> None:
        self.aborted = True


def test_a_connection_with_writes_paused_is_aborted_and_a_draining_one_is_not() -> None:
    stuck, draining = FakeTransport(buffered=4_000_000), FakeTransport(buffered=1000)
    assert abort_if_stuck(stuck) and stuck.aborted
    assert not abort_if_stuck(stuck)  # already closing: nothing more to do
    assert not abort_if_stuck(draining) and not draining.aborted
    assert not abort_if_stuck(None)


def test_the_transport_behind_uvicorns_send_is_remembered_in_the_scope() -> None:
    class Cycle:
        def __init__(self, transport: Any):
            self.transport = transport

        async def send(self, message: Any) -> None:
            return None

    transport = FakeTransport(0)
    scope: dict[str, Any] = {}
    remember_transport(scope, Cycle(transport).send)
    assert scope[SCOPE_KEY] is transport

    async def plain_send(message: Any) -> None:
        return None

    other: dict[str, Any] = {}
    remember_transport(other, plain_send)  # another server: nothing to remember
    assert SCOPE_KEY not in other
