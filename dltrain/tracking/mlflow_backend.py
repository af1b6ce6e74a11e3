"""The MLflow backend: the config as params, every scalar's history, text, images, figures and the
run's files as artifacts, in one MLflow run (a sweep's jobs: child runs of one parent run).

With no tracking_uri, runs go to a SQLite store beside the runs: `outputs/mlruns.db` (the nearest
folder named `outputs` above the run dir, else the folder holding the run dir or the sweep dir),
artifacts to `mlartifacts/` there: `mlflow ui --backend-store-uri sqlite:///outputs/mlruns.db`
(from an environment with SQLAlchemy 2: MLflow 3.17's server does not start with the SQLAlchemy
1.4 that the sweep extra's Optuna pins; logging to the store works with either).
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from dltrain.registry import LOGGERS
from dltrain.tracking.backend import Backend, RunInfo
from dltrain.tracking.mlflow_sweep import join_sweep, leave_sweep, locked

log = logging.getLogger(__name__)

SEND_SECONDS = 5.0  # about how long scalars wait in memory before a log_batch sends them
METRICS_PER_BATCH, PARAMS_PER_BATCH = 1000, 100  # MLflow's log_batch limits
KEY_LENGTH, PARAM_LENGTH, TAG_LENGTH = 250, 6000, 8000
STATUS = {"completed": "FINISHED", "interrupted": "KILLED"}  # anything else: FAILED
# A server that is down costs seconds, not MLflow's default 7 retries over ~4 minutes, before
# the Tracker drops this backend; set these variables yourself to wait longer.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
STORE_LOCK = ".mlruns.db.lock"  # parallel jobs create the default store's tables once


@LOGGERS.register("mlflow", requires="mlflow", extra="mlflow")
class MlflowBackend(Backend):
    """dltrain's tags are MLflow tags of the same name (value "true"), the notes the run's
    description. A resumed run continues its MLflow run: params keep their first values (MLflow
    cannot change them) and a value changed on resume is the tag `dltrain.resumed_with.<key>`;
    points an interrupted process logged after its checkpoint stay (MLflow cannot delete them)."""

    def __init__(
        self,
        run: RunInfo,
        tracking_uri: str | None = None,
        experiment_name: str = "dltrain",
        run_name: str | None = None,
    ):
        from mlflow import MlflowClient

        self.run = run
        if tracking_uri and tracking_uri.startswith(("http://", "https://")):
            for name, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
        if tracking_uri:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            experiment_id = self._experiment_id(experiment_name, None)
        else:
            store = default_store(run)
            store.mkdir(parents=True, exist_ok=True)
            with locked(store / STORE_LOCK):
                self.client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlruns.db'}")
                experiment_id = self._experiment_id(experiment_name, store / "mlartifacts")
        self.parent = (
            join_sweep(self.client, run, experiment_id, self._exists) if run.sweep_dir else None
        )
        self.run_id = self._continued() or self._created(experiment_id, run_name or run.name)
        self.pending: list[tuple[str, float, int, int]] = []  # (name, value, ms, step)
        self.names: set[str] = set()  # the metrics sent
        self.step = run.resumed_step or 0
        self.sent = time.monotonic()

    def _experiment_id(self, name: str, artifacts: Path | None) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = artifacts.as_uri() if artifacts else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another process created it meanwhile
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _exists(self, run_id: str) -> Any:
        """The run, or None where this store has no such run (another store's id)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return None

    def _continued(self) -> str | None:
        """A resumed run's MLflow run, RUNNING again, with the params it did not have."""
        run_id = self.run.saved_id("mlflow")
        if run_id is None:
            return None
        found = self._exists(run_id)
        if found is None:
            log.warning(f"mlflow: run {run_id} is not in this tracking store; starting a new run")
            return None
        self.client.update_run(run_id, status="RUNNING")
        logged, params = found.data.params, _params(self.run.params)
        self._log_params(run_id, {k: v for k, v in params.items() if k not in logged})
        changed = {k: v for k, v in params.items() if logged.get(k, v) != v}
        for key, value in changed.items():
            self.client.set_tag(run_id, f"dltrain.resumed_with.{key}"[:KEY_LENGTH], value)
        return run_id

    def _created(self, experiment_id: str, name: str) -> str:
        tags = {_key(t): "true" for t in self.run.tags}  # first: MLflow's own tags win
        tags |= {"mlflow.runName": name, "dltrain.run_dir": str(Path(self.run.run_dir).absolute())}
        if self.run.notes:
            tags["mlflow.note.content"] = self.run.notes[:TAG_LENGTH]
        if self.parent:
            tags["mlflow.parentRunId"] = self.parent
        run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        self.run.save_id("mlflow", run_id)  # first: a resume finds the run whatever fails next
        self._log_params(run_id, _params(self.run.params))
        return run_id

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start : start + PARAMS_PER_BATCH])

    def scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        now, self.step = int(time.time() * 1000), step
        self.pending.extend((_key(name), float(v), now, step) for name, v in values.items())
        if time.monotonic() - self.sent >= SEND_SECONDS:
            self._send()

    def _send(self) -> None:
        from mlflow.entities import Metric

        pending, self.pending = self.pending, []
        self.sent = time.monotonic()
        self.names.update(name for name, *_ in pending)
        for start in range(0, len(pending), METRICS_PER_BATCH):
            batch = [Metric(*m) for m in pending[start : start + METRICS_PER_BATCH]]
            self.client.log_batch(self.run_id, metrics=batch)

    def text(self, tag: str, markdown: str, step: int) -> None:
        self.client.log_text(self.run_id, markdown, f"{_key(tag)}.md")

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """The final metrics the scalars did not log already (the params went at the start)."""
        self._send()
        now = int(time.time() * 1000)
        for name, value in metrics.items():
            if _key(name) not in self.names:
                self.pending.append((_key(name), float(value), now, self.step))
        self._send()

    def image(self, tag: str, grid: Any, step: int) -> None:
        pixels = grid.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0)
        key = re.sub(r"[^A-Za-z0-9_\-./ ]", "_", _key(tag))
        self.client.log_image(self.run_id, pixels.cpu().numpy(), key=key, step=step)

    def figure(self, tag: str, fig: Any, step: int) -> None:
        self.client.log_figure(self.run_id, fig, f"{_key(tag)}.png")

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def flush(self) -> None:
        self._send()

    def close(self, status: str) -> None:
        try:
            self._send()
        finally:
            self.client.set_terminated(self.run_id, STATUS.get(status, "FAILED"))
            if self.parent:
                leave_sweep(self.client, self.run)


def default_store(run: RunInfo) -> Path:
    """The folder of the default SQLite store: the nearest `outputs` above the run dir, else the
    folder holding the run dir (a sweep job's: the folder holding the sweep)."""
    run_dir = Path(run.run_dir).absolute()
    outputs = next((p for p in run_dir.parents if p.name == "outputs"), None)
    return outputs or (Path(run.sweep_dir).absolute() if run.sweep_dir else run_dir).parent


def _key(name: str) -> str:
    """`name` as MLflow takes a metric, param or tag name: its characters, no `..` or `//`."""
    name = re.sub(r"[^/\w.\- :]", "_", str(name))
    return "/".join(p for p in name.split("/") if p not in ("", ".", ".."))[:KEY_LENGTH] or "_"


def _params(params: dict[str, Any]) -> dict[str, str]:
    return {_key(k): str(v)[:PARAM_LENGTH] for k, v in params.items()}
