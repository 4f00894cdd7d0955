"""BLAS thread pinning, so results do not depend on thread counts.

OpenBLAS splits long reductions (``ddot``) and large products between its threads, and the
split changes the order of the additions: a fit run with 1 and with 2 BLAS threads can
differ in the last bits, and a Markov chain amplifies such differences into different
draws. joblib's loky workers also get fewer BLAS threads than the main process
(``cpu_count // n_jobs``), so without pinning ``n_jobs`` would change results. Every
chain, every ``transform`` and every per-imputation analysis fit therefore runs with one
BLAS thread (the parallelism is across chains and imputations, not inside them).

OpenBLAS's pthreads thread pool, the one numpy's and scipy's wheels ship, is shared by the
whole process, so the pin is process-wide, while chains may run in threads of one process
(joblib's threading backend, Dask with ``processes=False``). Two rules keep it right:

- it is reference-counted: the first entry sets one thread, the last exit restores the
  original setting (a plain ``ThreadpoolController.limit`` per chain would let the first
  chain to finish restore the thread count while the others still run);
- the engine and the pooler also take it in the thread that starts the parallel section,
  around the whole section, so that this thread sets and restores the limit: threadpoolctl
  (3.8) lets only one thread at a time change OpenBLAS's setting and silently ignores the
  others, so a limit set by one worker thread and restored by another would be lost, and
  the process left with one BLAS thread.

This room knows nothing about imputation: it is used by the engine and by the pooler.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController

__all__ = ["one_blas_thread"]

_LOCK = threading.Lock()
_CONTROLLER: ThreadpoolController | None = None
_LIMITER = None
_ACTIVE = 0


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Context pinning every loaded BLAS library to one thread (re-entrant, thread-safe).

    The controller inspects the loaded libraries once per process (a few ms), not per
    chain; skmlmi imports numpy's and scipy's BLAS when it is imported, so both are seen.
    """
    global _CONTROLLER, _LIMITER, _ACTIVE
    with _LOCK:
        if _CONTROLLER is None:
            _CONTROLLER = ThreadpoolController()
        if _ACTIVE == 0:
            _LIMITER = _CONTROLLER.limit(limits=1, user_api="blas")
        _ACTIVE += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0:
                _LIMITER.restore_original_limits()
                _LIMITER = None
