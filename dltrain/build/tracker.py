"""The run's Tracker: metrics.jsonl, the selected logger backends (logger=[...]) with what they
know of the run (RunInfo: its name, config, sweep, tags, notes), the console."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dltrain import run_files
from dltrain.config import options
from dltrain.errors import ConfigError
from dltrain.registry import LOGGERS
from dltrain.tracking.backend import RunInfo, flatten
from dltrain.tracking.metrics_log import MetricsLog
from dltrain.tracking.tracker import Tracker

log = logging.getLogger(__name__)
# Beside a sweep's swept keys, what HPARAMS shows of each job (the rest is in config.yaml).
ESSENTIAL = ("model.name", "dataset.name", "optimizer.name", "optimizer.lr", "trainer.seed")


def build_tracker(
    cfg: DictConfig, run_dir: Path, console: Console | None, resumed_step: int | None
) -> Tracker:
    """The Tracker of rank 0, its backends started (a resumed run continues their runs)."""
    run = run_info(cfg, run_dir, resumed_step)
    backends, failed = {}, {}
    for name, kwargs in options(cfg.get("logger") or {}).items():
        try:
            backends[name] = LOGGERS.build(name, kwargs or {}, run=run)
        except ConfigError:
            raise
        except Exception as e:  # its server unreachable: the run goes on without it
            failed[name] = f"start failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
            log.warning(f"logger {name} does not log this run ({failed[name]}); the others do")
    shown = run.params
    if run.swept:  # HPARAMS: what varies, and a few essentials
        shown = {k: v for k, v in run.params.items() if k in (*run.swept, *ESSENTIAL)}
    tracker = Tracker(backends, MetricsLog(run_dir, resumed_step), console, shown)
    tracker.not_logged.update(failed)
    return tracker


def run_info(cfg: DictConfig, run_dir: Path, resumed_step: int | None) -> RunInfo:
    """What the backends are told: a sweep job is named by its swept overrides."""
    config = OmegaConf.to_container(cfg, resolve=True)
    hydra, _ = run_files.read_yaml(run_dir / ".hydra" / "hydra.yaml")
    hydra = (hydra or {}).get("hydra") if isinstance(hydra, dict) else None
    hydra = hydra if isinstance(hydra, dict) else {}
    job_overrides = _strings(_get(hydra, "overrides", "task"))
    sweep_dir, job, swept = None, None, ()
    if hydra.get("mode") == "MULTIRUN" and isinstance(_get(hydra, "sweep", "dir"), str):
        sweep_dir = Path(_get(hydra, "sweep", "dir")).absolute()
        number = _get(hydra, "job", "num")
        job = number if isinstance(number, int) else None
        multirun, _ = run_files.read_yaml(sweep_dir / "multirun.yaml")
        grid = _strings(_get(multirun, "hydra", "overrides", "task"))
        swept = tuple(_swept_keys(grid))
    flat = flatten(config)
    swept_flat = tuple(k if k in flat else f"{k}.name" for k in swept)
    params = {k: flat[k] for k in swept_flat if k in flat} | flat
    named = [o for o in job_overrides if o.lstrip("+~").partition("=")[0] in swept]
    tags = cfg.get("tags") or []
    return RunInfo(
        run_dir=run_dir,
        name=",".join(named) or ",".join(job_overrides) or run_dir.name,
        config=config,
        yaml=OmegaConf.to_yaml(cfg, resolve=True),
        params=params,
        swept=swept_flat,
        tags=tuple(str(t) for t in tags),
        notes=str(cfg.get("notes") or ""),
        resumed_step=resumed_step,
        sweep_dir=sweep_dir,
        job=job,
    )


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _swept_keys(grid: list[str]) -> list[str]:
    """The keys a sweep's command line gives several values (a,b / range / choice)."""
    try:
        parsed = OverridesParser.create().parse_overrides(grid)
    except HydraException:
        return []
    return [o.key_or_group for o in parsed if o.is_sweep_override()]
