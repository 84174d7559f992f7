"""Running a sweep's points: serially, on a local process pool, or on a Dask cluster.

Every point goes through :func:`run_sweep_point`, which calls
:func:`des.cli_run.run_point` (the function behind ``des run``), so a sweep reports
exactly the numbers ``des run`` prints for the same point. A point that raises records
its error and the sweep goes on.

Workers are long-lived (the pool's processes, a Dask worker's process), so the mapper's
in-memory schedule cache (:mod:`des.mapper.cache`), a module-level dict, fills once per
worker and serves every later point that asks for the same operator on the same device;
the on-disk cache (``DES_CACHE_DIR``) is shared by workers on one machine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from des.errors import DesError

logger = logging.getLogger(__name__)

#: ``on_result(position, result)``: called in the parent as each point finishes, with
#: the point's position in the list given and :func:`run_sweep_point`'s dict.
ResultCallback = Callable[[int, dict[str, Any]], None]
#: Seconds to wait for a Dask scheduler, and for its first worker, by default.
DEFAULT_TIMEOUT_S = 10.0


def check_combination(spec: Any) -> None:
    """Reject option combinations ``des run`` rejects (decode without a KV length...)."""
    if spec.phase == "decode" and spec.kv_len is None:
        raise DesError("phase decode needs kv_len (the KV-cache length the token attends to)")
    if spec.phase == "prefill" and spec.kv_len is not None:
        raise DesError("kv_len applies to phase decode only")


def run_sweep_point(spec: Any) -> dict[str, Any]:
    """Run one point; never raises.

    Parameters
    ----------
    spec : des.cli_run.PointSpec

    Returns
    -------
    dict
        ``status`` (``"ok"`` or ``"error"``), ``error`` (``"Type: message"`` or ``""``),
        ``record`` (the ``des run --json`` record, without per-op and utilisation
        detail; ``None`` on error) and ``wall_s``.
    """
    from des.cli_run import run_point

    start = time.perf_counter()
    try:
        check_combination(spec)
        record = run_point(spec).record
    except Exception as exc:  # a failed point is a result, whatever the failure
        if not isinstance(exc, DesError):
            logger.exception("point %s failed unexpectedly", spec)
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "record": None,
                "wall_s": time.perf_counter() - start}
    slim = {k: v for k, v in record.items() if k not in ("per_op", "utilisation")}
    return {"status": "ok", "error": "", "record": slim, "wall_s": record["wall_s"]}


def _failure(exc: BaseException) -> dict[str, Any]:
    """The result of a point whose worker failed (crashed, killed, lost)."""
    return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "record": None, "wall_s": 0.0}


def run_serial(specs: Sequence[Any], on_result: ResultCallback) -> None:
    """Run every point in this process, in order."""
    for position, spec in enumerate(specs):
        on_result(position, run_sweep_point(spec))


def run_pool(specs: Sequence[Any], on_result: ResultCallback, jobs: int) -> None:
    """Run the points on ``jobs`` local worker processes (submitted in order)."""
    executor = ProcessPoolExecutor(max_workers=jobs)
    try:
        futures = {executor.submit(run_sweep_point, spec): position for position, spec in enumerate(specs)}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # a worker process died (BrokenProcessPool)
                result = _failure(exc)
            on_result(futures[future], result)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def connect(address: str, timeout_s: float) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` with at least one worker.

    Raises
    ------
    DesError
        If ``distributed`` is missing, the scheduler cannot be reached within
        ``timeout_s`` seconds, or it has no worker within ``timeout_s`` seconds more.
    """
    try:
        from distributed import Client
    except ImportError:
        raise DesError("--scheduler needs the 'distributed' package (python3 -m pip install distributed)") from None
    # distributed logs each failed connection attempt; the DesError below says it once.
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        client = Client(address, timeout=timeout_s, set_as_default=False)
    except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address
        raise DesError(f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s: {exc}") from None
    finally:
        quiet.setLevel(level)
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except Exception:
        client.close()
        raise DesError(f"the Dask scheduler at {address} has no worker after {timeout_s:g} s") from None
    return client


def run_dask(specs: Sequence[Any], on_result: ResultCallback, address: str, timeout_s: float) -> None:
    """Run the points on the Dask cluster whose scheduler is at ``address``."""
    client = connect(address, timeout_s)
    try:
        futures = client.map(run_sweep_point, list(specs), pure=False)
        # Collected in point order (rows are written in that order anyway); the
        # scheduler runs them in any order meanwhile.
        for position, future in enumerate(futures):
            try:
                result = future.result()
            except Exception as exc:  # KilledWorker, a lost connection
                result = _failure(exc)
            on_result(position, result)
            future.release()
    finally:
        client.close()


def run_points(
    specs: Sequence[Any],
    on_result: ResultCallback,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Run ``specs`` serially (``jobs == 1``), on a process pool, or on Dask (``scheduler``)."""
    if scheduler:
        run_dask(specs, on_result, scheduler, timeout_s)
    elif jobs <= 1 or len(specs) <= 1:
        run_serial(specs, on_result)
    else:
        run_pool(specs, on_result, min(jobs, len(specs)))
