"""A progress bar on stderr for long work, drawn only on a terminal.

:class:`Progress` is told how much work there is (:meth:`Progress.start`) and, as the
work goes, how much was done (:meth:`Progress.advance`). It redraws one
self-overwriting line (``des run: [######------]  52 %  1,234/2,371 tasks, 3 s``) at
most every :data:`REDRAW_EVERY_S` seconds and only when its stream is a terminal, so
pipes, files and tests never see it and the simulation's results never depend on it.
:meth:`Progress.advance` is cheap (a counter; the clock is read every
:data:`CHECK_EVERY` calls), so the hardware may call it once per piece it moves.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Seconds between two redraws of the bar.
REDRAW_EVERY_S = 0.2
#: Calls of :meth:`Progress.advance` between two looks at the clock.
CHECK_EVERY = 256
#: Characters of the bar itself.
BAR_WIDTH = 30


class Progress:
    """One progress line on ``stream`` (stderr by default).

    Parameters
    ----------
    label : str
        What runs (``des run``), at the start of the line.
    unit : str
        What is counted (``tasks``, ``pieces``).
    stream : file, optional
        Where the line goes (default ``sys.stderr``).
    enabled : bool, optional
        Draw at all; default: whether ``stream`` is a terminal.
    """

    def __init__(self, label: str, unit: str = "steps", stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.total = 0
        self.done = 0
        self._calls = 0
        self._started = time.monotonic()
        self._drawn_s = 0.0
        self._shown = False

    def start(self, total: int) -> None:
        """Begin counting towards ``total`` units of work."""
        self.total = max(int(total), 0)
        self.done = 0
        self._started = time.monotonic()

    def advance(self, units: int = 1) -> None:
        """Count ``units`` more done; redraw now and then."""
        self.done += units
        if not self.enabled:
            return
        self._calls += 1
        if self._calls % CHECK_EVERY and self.done < self.total:
            return
        now = time.monotonic()
        if now - self._drawn_s >= REDRAW_EVERY_S or self.done >= self.total:
            self._drawn_s = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = min(self.done / self.total, 1.0) if self.total else 0.0
        filled = int(round(fraction * BAR_WIDTH))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        elapsed = now - self._started
        self.stream.write(
            f"\r{self.label}: [{bar}] {fraction * 100:3.0f} %  {self.done:,}/{self.total:,} {self.unit}, {elapsed:.0f} s "
        )
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the line (if one was drawn), so the next output starts on its own."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
