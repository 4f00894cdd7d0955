"""Progress of the chains: a tqdm bar over chains x iterations, or a few lines without one.

With ``verbose >= 1`` the imputer shows how many of its chain-iterations are done, with the
elapsed time and an estimate of the time left. A progress bar (tqdm, the optional dependency
``skmlmi[progress]``) when tqdm is installed and standard error is a terminal or Jupyter; otherwise (tqdm
absent, output redirected to a file or a CI log) one line at every quarter of the work, so a
log keeps four lines per run, not one per chain and iteration. Chains run in this process advance it
after every iteration; chains in worker processes as each chain finishes (a worker cannot
reach the parent's bar).
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]

_LINES = 4  # lines per run without a bar: at every quarter of the work


def _tqdm():
    """tqdm's class, or None when it is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """Chain-iterations done out of ``total``, shown on standard error while ``enabled``.

    Parameters
    ----------
    total : int
        Chain-iterations of the run (chains x iterations).
    enabled : bool
        False shows nothing (``verbose=0``, the CLI's ``--quiet``).
    bar : bool or None, default=None
        A tqdm bar; None chooses one when tqdm is installed and standard error is a terminal
        (or a Jupyter kernel's, which renders the bar's carriage returns).
    """

    def __init__(self, total: int, enabled: bool, bar: bool | None = None):
        self.total, self.enabled, self.done = int(total), bool(enabled), 0
        self.started = time.perf_counter()
        self._next_line = 1  # the next quarter of the work that prints a line
        self._bar = None
        if not self.enabled:
            return
        tqdm = _tqdm()
        if bar is None:
            bar = tqdm is not None and (_is_terminal(sys.stderr) or "ipykernel" in sys.modules)
        if bar and tqdm is not None:
            self._bar = tqdm(total=self.total, desc="[skmlmi] chain-iterations", unit="it", file=sys.stderr)

    def update(self, n: int = 1) -> None:
        """``n`` more chain-iterations done."""
        if not self.enabled:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        if self.total and self.done * _LINES >= self._next_line * self.total:
            self._next_line = self.done * _LINES // self.total + 1  # a jump over several quarters prints one line
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        """``[skmlmi] 30/50 chain-iterations (60%), 1.2 s elapsed, about 0.8 s left``."""
        elapsed = time.perf_counter() - self.started
        share = self.done / self.total if self.total else 1.0
        left = elapsed * (1 - share) / share if share > 0 else float("nan")
        return f"[skmlmi] {self.done}/{self.total} chain-iterations ({share:.0%}), {elapsed:.1f} s elapsed" + (
            f", about {left:.1f} s left" if share < 1 else ""
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False
