"""A daemon thread that calls a function every few seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

logger = logging.getLogger(__name__)


class Periodic:
    """Calls `beat` now and then every `interval_s` on its own thread; Redis errors are logged
    and the next beat tries again (a heartbeat must outlive a Redis restart)."""

    def __init__(self, name: str, interval_s: float, beat: Callable[[], object]):
        self.name = name
        self.interval_s = interval_s
        self.beat = beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _safe_beat(self) -> None:
        try:
            self.beat()
        except redis.RedisError as exc:
            logger.warning("%s failed", self.name, extra={"error": str(exc)})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._safe_beat()

    def start(self) -> None:
        self._safe_beat()
        self._thread.start()

    def stop(self, wait_s: float = 5.0) -> None:
        """Stop beating; waits for a beat under way so its resources can be closed after."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(wait_s)


@contextmanager
def periodically(name: str, interval_s: float, beat: Callable[[], object]) -> Iterator[None]:
    """Run `beat` periodically for the duration of the block."""
    ticker = Periodic(name, interval_s, beat)
    ticker.start()
    try:
        yield
    finally:
        ticker.stop()
