"""Pure relay logic: SSE frames encoded once, per-subscriber outboxes, token coalescing.

No I/O here: the hub (api/hub.py) feeds outboxes from Redis, the route writes what they hold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sse_starlette import ServerSentEvent

from shared.schemas import Event, EventType


@dataclass(frozen=True, slots=True)
class Frame:
    """One event as the wire carries it: `sse` is encoded once and shared by every client.

    A coalesced token frame stands for the tokens `first_seq..seq`; any other frame has
    `first_seq == seq`.
    """

    event: Event
    sse: bytes
    first_seq: int

    @property
    def seq(self) -> int:
        return self.event.seq

    @property
    def is_token(self) -> bool:
        return self.event.type is EventType.TOKEN


def encode(event: Event) -> Frame:
    """The SSE bytes of `event` (`id:` = seq, `event:` = type, `data:` = its JSON)."""
    sse = ServerSentEvent(data=event.to_json(), event=event.type.value, id=str(event.seq))
    return Frame(event, sse.encode(), event.seq)


# Clients that fall behind together take the same runs: each merged run is built once.
_MERGED: dict[tuple[str, int, int, int], Frame] = {}
_MERGED_MAX = 4096


def merge_tokens(frames: Sequence[Frame]) -> Frame:
    """One token frame for consecutive token frames: texts concatenated, the id of the last,
    `data.first_seq` the seq of the first (so a client can still check it missed nothing)."""
    if len(frames) == 1:
        return frames[0]
    last = frames[-1].event
    key = (last.job_id, last.attempt, frames[0].first_seq, last.seq)
    cached = _MERGED.get(key)
    if cached is not None:
        return cached
    text = "".join(str(f.event.data.get("text", "")) for f in frames)
    merged = Event(
        seq=last.seq,
        type=last.type,
        job_id=last.job_id,
        attempt=last.attempt,
        ts=last.ts,
        data={"text": text, "first_seq": frames[0].first_seq},
    )
    frame = Frame(merged, encode(merged).sse, frames[0].first_seq)
    if len(_MERGED) >= _MERGED_MAX:
        _MERGED.clear()
    _MERGED[key] = frame
    return frame


def coalesce(frames: Iterable[Frame]) -> list[Frame]:
    """Merge each run of consecutive token frames (of one attempt) into one frame; every other
    frame passes unchanged and the order is kept."""
    out: list[Frame] = []
    run: list[Frame] = []
    for frame in frames:
        if frame.is_token and (not run or run[-1].event.attempt == frame.event.attempt):
            run.append(frame)
            continue
        if run:
            out.append(merge_tokens(run))
            run = []
        if frame.is_token:
            run.append(frame)
        else:
            out.append(frame)
    if run:
        out.append(merge_tokens(run))
    return out


class Outbox:
    """The frames one subscriber has not written yet, with the bound that makes it slow.

    A subscriber is slow once more than `max_frames` wait, or the oldest waiting frame is older
    than `max_lag_s` when another arrives; from then on it takes nothing more (the stream ends
    and the client resumes with Last-Event-ID).
    """

    __slots__ = ("_frames", "_since", "max_frames", "max_lag_s", "slow")

    def __init__(self, max_frames: int, max_lag_s: float):
        self.max_frames = max_frames
        self.max_lag_s = max_lag_s
        self._frames: deque[Frame] = deque()
        self._since = 0.0  # when the oldest waiting frame arrived
        self.slow = False

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: Frame, now: float) -> bool:
        """Queue `frame`; False when the subscriber is (now) slow and the frame was not kept."""
        if self.slow:
            return False
        frames = self._frames
        if not frames:
            self._since = now
        elif len(frames) >= self.max_frames or now - self._since > self.max_lag_s:
            self.slow = True
            frames.clear()
            return False
        frames.append(frame)
        return True

    def lag(self, now: float) -> float:
        """How long the oldest waiting frame has waited (0 when none waits)."""
        return now - self._since if self._frames else 0.0

    def take(self) -> list[Frame]:
        """Everything waiting, oldest first."""
        out = list(self._frames)
        self._frames.clear()
        return out
