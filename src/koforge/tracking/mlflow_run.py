"""MLflow tracking: one small context manager every command logs through.

Where runs go: `$MLFLOW_TRACKING_URI` when set (any MLflow server or store),
else a SQLite store at `./mlruns/mlflow.db` with artifacts under `./mlruns/`
(MLflow 3 refuses the old plain-folder store by default). Open the UI with
`mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`.
`KOFORGE_MLFLOW=off` disables logging (used by fast tests); a run that cannot
reach its store never breaks the training it describes: it warns and goes on (for a
server that refuses connections, once per process: later runs skip it).
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from koforge._utils.logging import get_logger

log = get_logger(__name__)

_UNREACHABLE: set[str] = set()
"""Tracking URIs this process failed to connect to. An HTTP store retries each request for about four minutes
before giving up, and the demo opens a dozen runs: later runs to such a URI are skipped at once."""


def default_tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, else sqlite:///<cwd>/mlruns/mlflow.db."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    folder = Path.cwd() / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def tracking_enabled() -> bool:
    """False when KOFORGE_MLFLOW is off/0/false, and on every torchrun process but rank 0: one run per
    job (several processes creating one sqlite store at once leave it half-migrated)."""
    from koforge._utils.distributed import launch_rank

    if launch_rank() != 0:
        return False
    return os.environ.get("KOFORGE_MLFLOW", "on").lower() not in ("off", "0", "false", "no")


def store_unreachable(uri: str | None = None) -> bool:
    """Whether this process gave up on the tracking store at `uri` (default: the current one)."""
    return (uri or default_tracking_uri()) in _UNREACHABLE


def _is_connection_error(e: BaseException) -> bool:
    """Whether `e` (MLflow wraps the requests error without `from`) comes from not reaching the store."""
    import requests

    seen: BaseException | None = e
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, requests.exceptions.RequestException):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def _without_retries() -> Iterator[None]:
    """Fail fast on a store already known unreachable (MLflow reads these variables on every request)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _scalar(value: Any) -> float | None:
    """A metric value as a float: Python, numpy or one-element torch numbers; None for anything else (bools too)."""
    if isinstance(value, bool) or getattr(value, "dtype", None) is not None and str(value.dtype) == "bool":
        return None
    if isinstance(value, numbers.Real):  # numpy scalars register as numbers.Real
        return float(value)
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a 0-d tensor or array
        item = value.item()
        return float(item) if isinstance(item, numbers.Real) and not isinstance(item, bool) else None
    return None


class TrackedRun:
    """A handle on an active MLflow run (or a no-op when tracking is off).

    Every call is guarded: if the store fails mid-run (server down, database
    removed), tracking switches itself off with one warning and the work goes on.
    """

    def __init__(self, mlflow_module: Any | None, run_id: str | None, uri: str | None = None) -> None:
        self._mlflow = mlflow_module
        self.run_id = run_id
        self._uri = uri

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self._mlflow is None:
            return
        try:
            getattr(self._mlflow, method)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001  a tracking outage must not stop training
            log.warning("MLflow %s failed (%s); tracking is off for the rest of this run", method, e)
            self._mlflow = None
            if self._uri is not None and _is_connection_error(e):
                _UNREACHABLE.add(self._uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        # MLflow caps a param value at 6000 chars; keys are flattened by the caller.
        self._call("log_params", {k: str(v)[:6000] for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        # MLflow takes letters, digits, _ - . space and / in a key: "ndcg@10" becomes "ndcg_10"
        values = {k: _scalar(v) for k, v in metrics.items()}
        clean = {re.sub(r"[^\w\-. /]", "_", k): v for k, v in values.items() if v is not None and math.isfinite(v)}
        if clean:
            self._call("log_metrics", clean, step=step)

    def log_artifact(self, path: str | Path) -> None:
        if Path(path).exists():
            self._call("log_artifact", str(path))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._call("set_tags", {k: str(v) for k, v in tags.items()})


@contextlib.contextmanager
def tracked_run(experiment: str, run_name: str | None = None, params: Mapping[str, Any] | None = None,
                tags: Mapping[str, Any] | None = None, nested: bool = False) -> Iterator[TrackedRun]:
    """Open an MLflow run in `experiment`; yields a `TrackedRun` (a no-op when disabled)."""
    if not tracking_enabled():
        yield TrackedRun(None, None)
        return
    uri = default_tracking_uri()
    if uri in _UNREACHABLE:  # warned once already
        yield TrackedRun(None, None)
        return
    import mlflow

    run = None
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name, nested=nested)
    except Exception as e:  # a tracking outage must not stop the work itself
        if _is_connection_error(e):
            _UNREACHABLE.add(uri)
            log.warning("MLflow at %s is unreachable (%s); continuing without tracking for the rest of this process",
                        uri, e)
        else:
            log.warning("MLflow unavailable (%s); continuing without tracking", e)
    if run is None:  # yielded outside the except block: an error of the work is not chained to MLflow's
        yield TrackedRun(None, None)
        return
    handle = TrackedRun(mlflow, run.info.run_id, uri)
    status = "FAILED"
    try:
        if params:
            handle.log_params(params)
        if tags:
            handle.set_tags(tags)
        yield handle
        status = "FINISHED"
    finally:
        try:
            # The store went away during the run: end it locally without four more minutes of retries.
            with _without_retries() if uri in _UNREACHABLE else contextlib.nullcontext():
                mlflow.end_run(status=status)
        except Exception as e:  # noqa: BLE001
            if uri not in _UNREACHABLE:
                log.warning("MLflow end_run failed (%s)", e)


def log_result(experiment: str, run_name: str, params: Mapping[str, Any], metrics: Mapping[str, Any],
               artifacts: Iterable[str | Path] = ()) -> None:
    """One finished run for a command that is a single measurement (tokenizer train/eval, expand, embed eval)."""
    with tracked_run(experiment, run_name=run_name, params=params) as run:
        run.log_metrics(metrics)
        for path in artifacts:
            run.log_artifact(path)
