"""Progress of long commands, the same for every command.

On a terminal (stderr is a TTY): one tqdm bar per stage, redrawn in place. Anywhere else (a log
file, a pipe, CI): plain lines on stderr, with no carriage returns or escape codes: one when a
stage starts, then at most one every ``OPENCMAP_PROGRESS_SECONDS`` seconds (default 30), and one
when it ends. ``OPENCMAP_PROGRESS=bars|lines|off`` overrides the choice.

The library reports progress as callbacks ``(done, total)`` or ``(stage, done, total)``;
:class:`Progress` is both (``progress(stage, done, total)``, or ``progress.for_stage(name)`` for
a two-argument callback). Use it as a context manager so bars are closed and the last line of
each stage is written.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, TextIO

__all__ = ["Progress", "progress_mode"]


def progress_mode(stream: TextIO | None = None) -> str:
    """``bars`` on a terminal, ``lines`` otherwise; ``OPENCMAP_PROGRESS`` overrides (``off`` too)."""
    forced = os.environ.get("OPENCMAP_PROGRESS", "").strip().lower()
    if forced in ("bars", "lines", "off"):
        return forced
    stream = sys.stderr if stream is None else stream
    try:
        return "bars" if stream.isatty() else "lines"
    except (AttributeError, ValueError):
        return "lines"


def _every() -> float:
    try:
        return max(0.0, float(os.environ.get("OPENCMAP_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def _count(n: float, unit: str) -> str:
    if unit == "B":
        return f"{n / 1e6:,.1f} MB"
    return f"{int(n):,}" + (f" {unit}" if unit else "")


class Progress:
    """Bars on a terminal, periodic plain lines elsewhere (see the module docs).

    ``enabled=False`` shows nothing. ``unit`` names what is counted (``sig``, ``file``, ``B`` for
    bytes). ``leave``: keep finished bars on screen. ``one_at_a_time``: close a stage's bar when
    the next stage starts.
    """

    def __init__(self, *, enabled: bool = True, unit: str = "", leave: bool = False, one_at_a_time: bool = False,
                 mode: str | None = None, stream: TextIO | None = None, every: float | None = None) -> None:
        self.stream = stream
        self.mode = "off" if not enabled else (mode or progress_mode(stream))
        self.unit = unit
        self.leave = leave
        self.one_at_a_time = one_at_a_time
        self.every = _every() if every is None else every
        self._bars: dict[str, Any] = {}
        self._state: dict[str, dict[str, Any]] = {}

    # -- callbacks
    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.mode == "bars":
            self._bar(stage, done, total)
        elif self.mode == "lines":
            self._line(stage, done, total)

    def for_stage(self, stage: str) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback reporting as ``stage``."""
        return lambda done, total: self(stage, done, total)

    # -- bars
    def _bar(self, stage: str, done: int, total: int | None) -> None:
        bar = self._bars.get(stage)
        if bar is None:
            from tqdm import tqdm

            if self.one_at_a_time:
                self._close_bars()
            scale = self.unit == "B"
            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit=self.unit or "it", unit_scale=scale,
                                           unit_divisor=1024 if scale else 1000, leave=self.leave,
                                           file=self.stream or sys.stderr)
        bar.total = total
        bar.n = done
        bar.refresh()

    def _close_bars(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    # -- lines
    def _line(self, stage: str, done: int, total: int | None) -> None:
        now = time.perf_counter()
        state = self._state.get(stage)
        if state is None:
            state = self._state[stage] = {"t0": now, "last": now, "done": done, "total": total, "ended": False}
            self._write(f"{stage}: started" + (f" ({_count(total, self.unit)})" if total else ""))
        state["done"], state["total"] = done, total
        if state["ended"]:
            return
        if total and done >= total:
            self._end(stage, state, now)
        elif now - state["last"] >= self.every:
            state["last"] = now
            pct = f" ({100 * done / total:.0f}%)" if total else ""
            self._write(f"{stage}: {_count(done, self.unit)}" + (f" of {_count(total, self.unit)}" if total else "") + pct)

    def _end(self, stage: str, state: dict[str, Any], now: float) -> None:
        state["ended"] = True
        done, total = state["done"], state["total"]
        if total and done < total:
            self._write(f"{stage}: stopped at {_count(done, self.unit)} of {_count(total, self.unit)} after {now - state['t0']:.1f} s")
        else:
            self._write(f"{stage}: done, {_count(done, self.unit)} in {now - state['t0']:.1f} s")

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(text + "\n")
        stream.flush()

    # -- end
    def close(self) -> None:
        """Close the bars; write the closing line of stages that did not reach their total."""
        self._close_bars()
        now = time.perf_counter()
        for stage, state in self._state.items():
            if not state["ended"]:
                self._end(stage, state, now)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
