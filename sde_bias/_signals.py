"""Stop a run cleanly on SIGINT (Ctrl-C) or SIGTERM.

Inside :class:`StopOnSignal`, the first SIGINT or SIGTERM only sets a flag: the run
finishes the chunk it is computing, writes its checkpoint, and :meth:`StopOnSignal.check`
then raises :class:`RunInterrupted` (a ``KeyboardInterrupt``: the command line exits with
130 and the run can be continued with ``--resume``). A second signal interrupts at once.
Handlers can only be installed in the main thread; elsewhere the context does nothing.
"""

from __future__ import annotations

import signal
import threading


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal after writing its checkpoint."""


class StopOnSignal:
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def _handler(self, signum, frame):
        if self.received is not None:  # the second signal: stop now
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def check(self, where: str) -> None:
        """Raise :class:`RunInterrupted` if a signal came (call it after a checkpoint)."""
        if self.received is not None:
            name = signal.Signals(self.received).name
            raise RunInterrupted(f"{name} received: stopped after {where}")
