"""How often a streamed reply's frames go out, given how many replies this process streams at once.

Every frame costs the process the same (serialising and sending the tab's update), whoever it is
for; so past a point, more streams at the same interval only make every stream fall behind. The
pacer keeps the process's total frames per second near a budget by stretching the interval as
streams are added, never past `max_ms`, and never below `base_ms` (CHATBOT_FRAME_MS).
The first frame of a reply is not its business: `coalesce` sends it at once, whatever the interval.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

DEFAULT_MAX_MS = 250
#: Frames per second for the whole process: 30 streams at 50 ms; at 60 streams the interval is 100 ms.
#: Measured (bench/capacity_bench.py): one worker keeps 30 streams at 1,000 tok/s at 50 ms frames.
DEFAULT_FRAMES_PER_S = 600


class FramePacer:
    """Counts the replies streaming in this process and gives each the frame interval the load allows.

    `frames_per_s=None` is the fixed policy: always `base_ms` (kept to measure against).
    `base_ms=0` sends every arrival as its own frame (the naive design), whatever the load.
    """

    def __init__(self, base_ms: int, max_ms: int = DEFAULT_MAX_MS, frames_per_s: int | None = DEFAULT_FRAMES_PER_S):
        if base_ms < 0 or max_ms < base_ms:
            raise ValueError(f"frame interval: need 0 <= base_ms <= max_ms, got {base_ms} and {max_ms}")
        if frames_per_s is not None and frames_per_s <= 0:
            raise ValueError(f"frames_per_s must be positive (or None for a fixed interval), got {frames_per_s}")
        self.base_s = base_ms / 1000
        self.max_s = max_ms / 1000
        self.frames_per_s = frames_per_s
        self._active = 0
        self._lock = threading.Lock()  # replies may stream from more than one thread's event loop

    @property
    def active(self) -> int:
        """Replies streaming now."""
        return self._active

    def interval_s(self) -> float:
        """The interval between one reply's frames at the current load, in seconds."""
        if self.frames_per_s is None or self.base_s == 0:
            return self.base_s
        # n streams at interval i make n / i frames per second: keep that at the budget.
        return min(self.max_s, max(self.base_s, self._active / self.frames_per_s))

    @contextlib.contextmanager
    def stream(self) -> Iterator[Callable[[], float]]:
        """Count one reply as streaming while inside; yields `interval_s`, for `coalesce(source, interval)`."""
        with self._lock:
            self._active += 1
        try:
            yield self.interval_s
        finally:
            with self._lock:
                self._active -= 1
