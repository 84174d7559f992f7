"""Running a sweep's points: serially, on a local process pool, or on a Dask cluster.

Every point goes through :func:`run_sweep_point`, which calls
:func:`des.study.run_point` (the function behind ``des run``), so a sweep reports
exactly the numbers ``des run`` prints for the same point. A point that raises records
its error and the sweep goes on.

Workers are long-lived (the pool's processes, a Dask worker's process), so the mapper's
in-memory schedule cache (:mod:`des.mapper.cache`), a module-level dict, fills once per
worker and serves every later point that asks for the same operator on the same device;
the on-disk cache (``DES_CACHE_DIR``) is shared by workers on one machine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from des.errors import DesError
from des.units import format_count

logger = logging.getLogger(__name__)

#: ``on_result(position, result)``: called in the parent as each point finishes, with
#: the point's position in the list given and :func:`run_sweep_point`'s dict.
ResultCallback = Callable[[int, dict[str, Any]], None]
#: Pool tasks per worker process (see :func:`chunk_size`), and the most points in one.
CHUNKS_PER_JOB = 8
MAX_CHUNK = 64
#: Seconds to wait for a Dask scheduler, and for its first worker, by default.
DEFAULT_TIMEOUT_S = 10.0
#: Seconds a Dask sweep waits for its next point before it stops as stalled.
DEFAULT_STALL_TIMEOUT_S = 600.0


#: Systems and models built in this process for the sweep run named by
#: ``_BUILT_FOR[0]``: reading YAML is a fifth of a single-layer point's time, and a
#: sweep asks for the same few again and again. A new run (token) starts afresh, so
#: a file edited between two sweeps on a long-lived Dask worker is read again.
_BUILT: dict[str, Any] = {}
_BUILT_FOR = [""]


def _built(token: str, what: str, name: Any, overrides: tuple, build: Callable[[], Any]) -> Any:
    if _BUILT_FOR[0] != token:
        _BUILT.clear()
        _BUILT_FOR[0] = token
    key = json.dumps([what, name, overrides], default=str)
    if key not in _BUILT:
        _BUILT[key] = build()
    return _BUILT[key]


def with_built_specs(spec: Any, token: str) -> Any:
    """``spec`` with its system and model built (once per ``token`` in this process).

    The built specs are shared data (nothing changes them: faults work on a copy), so
    the result is the same as loading them afresh.
    """
    from des.study import build_model, build_system

    system, model = spec.system, spec.model
    if isinstance(system, str):
        system = _built(token, "system", system, spec.system_overrides,
                        lambda: build_system(spec.system, spec.system_overrides))
    if isinstance(model, str):
        model = _built(token, "model", model, spec.model_overrides,
                       lambda: build_model(spec.model, spec.model_overrides))
    return dataclasses.replace(spec, system=system, model=model, system_overrides=(), model_overrides=())


def run_sweep_point(spec: Any, token: str = "") -> dict[str, Any]:
    """Run one point; never raises.

    Parameters
    ----------
    spec : des.study.PointSpec
    token : str
        Names the sweep run: systems and models are built once per token and process
        (empty: build them for this point alone).

    Returns
    -------
    dict
        ``status`` (``"ok"`` or ``"error"``), ``error`` (``"Type: message"`` or ``""``),
        ``record`` (the ``des run --json`` record, without per-op and utilisation
        detail; ``None`` on error) and ``wall_s``.
    """
    from des.study import run_point

    start = time.perf_counter()
    try:
        built = with_built_specs(spec, token) if token else spec
        if spec.serve:
            from des.serve.point import serve_point

            record = serve_point(built)
        else:
            record = run_point(built).record
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


def run_serial(specs: Sequence[Any], on_result: ResultCallback, token: str = "") -> None:
    """Run every point in this process, in order."""
    for position, spec in enumerate(specs):
        on_result(position, run_sweep_point(spec, token))


def run_sweep_chunk(specs: Sequence[Any], token: str = "") -> list[dict[str, Any]]:
    """:func:`run_sweep_point` of each spec, in order (one task of the process pool)."""
    return [run_sweep_point(spec, token) for spec in specs]


def chunk_size(points: int, jobs: int) -> int:
    """Points per pool task: neighbouring points (which share operator shapes, so the
    worker's mapper cache serves them) go to one worker, in enough tasks per worker
    (:data:`CHUNKS_PER_JOB`) to balance the load and keep the progress line moving."""
    return max(1, min(MAX_CHUNK, points // (jobs * CHUNKS_PER_JOB)))


def run_pool(specs: Sequence[Any], on_result: ResultCallback, jobs: int, token: str = "") -> None:
    """Run the points on ``jobs`` local worker processes, in contiguous chunks."""
    size = chunk_size(len(specs), jobs)
    starts = range(0, len(specs), size)
    executor = ProcessPoolExecutor(max_workers=jobs)
    try:
        futures = {executor.submit(run_sweep_chunk, specs[start:start + size], token): start for start in starts}
        for future in as_completed(futures):
            start = futures[future]
            try:
                results = future.result()
            except Exception as exc:  # a worker process died (BrokenProcessPool)
                results = [_failure(exc)] * len(specs[start:start + size])
            for offset, result in enumerate(results):
                on_result(start + offset, result)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


#: Dask's address schemes that name a host and a port.
_HOST_PORT_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def check_address(address: str) -> tuple[str, int]:
    """The host and port of a Dask scheduler address, or a clear error.

    ``tcp://10.0.0.5:8786``, ``tls://...``, ``ws://...`` or a bare ``host:port`` (Dask's
    default scheme is ``tcp``).

    Raises
    ------
    DesError
        For an unknown scheme, a missing host or a port that is not a number in
        1..65535.
    """
    scheme, separator, rest = address.partition("://")
    if not separator:
        scheme, rest = "tcp", address
    if scheme not in _HOST_PORT_SCHEMES:
        raise DesError(
            f"--scheduler {address}: unknown scheme '{scheme}://'; expected one of "
            f"{', '.join(s + '://' for s in _HOST_PORT_SCHEMES)} followed by HOST:PORT"
        )
    host, colon, port_text = rest.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not colon or not host:
        raise DesError(f"--scheduler {address}: expected {scheme}://HOST:PORT, e.g. tcp://10.0.0.5:8786")
    if not port_text.isdigit() or not 0 < int(port_text) < 2**16:
        raise DesError(f"--scheduler {address}: the port must be a number from 1 to 65535, got {port_text!r}")
    return host, int(port_text)


def connect(address: str, timeout_s: float) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` with at least one worker.

    The address is checked and its port tried with a plain socket first, so a malformed
    or unreachable address fails at once, without the client's own retries.

    Raises
    ------
    DesError
        If ``distributed`` is missing, the address is malformed, the scheduler cannot be
        reached within ``timeout_s`` seconds, or it has no worker within ``timeout_s``
        seconds more.
    """
    host, port = check_address(address)
    try:
        from distributed import Client
    except ImportError:
        raise DesError("--scheduler needs the 'distributed' package (python3 -m pip install distributed)") from None
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise DesError(f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s: {exc.strerror or exc}") from None
    # distributed logs each failed connection attempt; the DesError below says it once.
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        client = Client(address, timeout=timeout_s, set_as_default=False)
    except Exception as exc:  # OSError, TimeoutError: something else listens there
        raise DesError(f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s: {exc}") from None
    finally:
        quiet.setLevel(level)
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except Exception:
        client.close()
        raise DesError(f"the Dask scheduler at {address} has no worker after {timeout_s:g} s") from None
    return client


def _workers(client: Any) -> int:
    try:
        return len(client.scheduler_info().get("workers", {}))
    except Exception:  # the scheduler itself went away
        return 0


#: Seconds between two looks at a Dask sweep's unfinished points.
_POLL_S = 0.05


def _first_done(pending: dict[Any, int], within_s: float) -> list[Any]:
    """The futures of ``pending`` that are done, waiting up to ``within_s`` for one."""
    deadline = time.monotonic() + within_s
    while True:
        done = [future for future in pending if future.done()]
        if done or time.monotonic() >= deadline:
            return done
        time.sleep(_POLL_S)


def run_dask(
    specs: Sequence[Any],
    on_result: ResultCallback,
    address: str,
    timeout_s: float,
    token: str = "",
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
) -> None:
    """Run the points on the Dask cluster whose scheduler is at ``address``.

    Results are handed on as they finish. When no point finishes for
    ``stall_timeout_s`` seconds (every worker lost, say), the sweep stops with a
    :class:`DesError` saying so; the points already handed on are kept by the caller.
    """
    client = connect(address, timeout_s)
    try:
        futures = client.map(run_sweep_point, list(specs), token=token, pure=False)
        pending = {future: position for position, future in enumerate(futures)}

        def stalled() -> DesError:
            finished = len(specs) - len(pending)
            return DesError(
                f"no point finished on the Dask cluster at {address} in {stall_timeout_s:g} s "
                f"({format_count(_workers(client), 'worker')} left; {finished} of {format_count(len(specs), 'point')} done and kept); "
                f"restart the workers and run again with --resume, or raise --stall-timeout-s"
            )

        while pending:
            done = _first_done(pending, stall_timeout_s)
            if not done:
                raise stalled()
            for future in sorted(done, key=pending.__getitem__):
                try:
                    # A result held by a worker that was lost since must be computed
                    # again: bounded like any other wait.
                    result = future.result(timeout=stall_timeout_s)
                except TimeoutError:
                    raise stalled() from None
                except Exception as exc:  # KilledWorker, a lost connection
                    result = _failure(exc)
                on_result(pending.pop(future), result)
                future.release()
    finally:
        quiet = logging.getLogger("distributed")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            client.close(timeout=timeout_s)
        except Exception:  # a scheduler that is gone cannot be told goodbye
            pass
        finally:
            quiet.setLevel(level)


def run_points(
    specs: Sequence[Any],
    on_result: ResultCallback,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
) -> None:
    """Run ``specs`` serially (``jobs == 1``), on a process pool, or on Dask (``scheduler``).

    ``on_result`` is called in this process for each point as it finishes;
    ``stall_timeout_s`` bounds the wait for the next Dask result (see :func:`run_dask`).
    """
    token = f"{os.getpid()}-{time.time_ns()}"
    if scheduler:
        run_dask(specs, on_result, scheduler, timeout_s, token, stall_timeout_s)
    elif jobs <= 1 or len(specs) <= 1:
        run_serial(specs, on_result, token)
    else:
        run_pool(specs, on_result, min(jobs, len(specs)), token)
