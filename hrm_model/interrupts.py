"""Ctrl-C and SIGTERM keep the work: the current step finishes, a checkpoint is written, the
exact resume command is printed, exit code 130. A second signal quits at once (the default
action is back in place after the first), which is safe because checkpoints are atomic.

Also the wall-clock checkpoint timer (``checkpoint_every_minutes``): a long run on a CPU keeps
a recent checkpoint without the user choosing a step count.
"""
from __future__ import annotations

import signal
import threading
import time
from typing import Callable


class StopRequest:
    """Installs SIGINT / SIGTERM handlers for the training loop (main thread only)."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is None:
            self.signal_name = name
            # the next one of either kind quits at once (default action)
            for s in self._previous:
                signal.signal(s, signal.SIG_DFL)
            key = "Ctrl-C" if signum == signal.SIGINT else name
            self.say(f"{key}: finishing this step and writing a checkpoint (press {key} again to quit at once, "
                     "losing the work since the last checkpoint)")

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[s] = signal.signal(s, self._handle)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            try:
                signal.signal(s, h)
            except (ValueError, OSError, TypeError):
                pass
        self._previous.clear()


class WallClock:
    """True once every ``minutes`` of wall time (0: never)."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic):
        self.period = float(minutes or 0) * 60.0
        self.clock = clock
        self.last = clock()

    def due(self) -> bool:
        return self.period > 0 and self.clock() - self.last >= self.period

    def reset(self) -> None:
        self.last = self.clock()
