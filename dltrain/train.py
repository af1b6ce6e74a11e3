"""run(cfg, run_dir): build the run from its config, fit, test the best weights, save.

Hydra stays outside: this needs only a composed config and an output folder, so tests call it.
It trains in this process (one rank of a launcher's group, if one started it); starting several
ranks is dltrain.launch's.
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dltrain import checkpoints, files, plugins, startup_gc, training_state, visuals
from dltrain.build.run import build_run
from dltrain.built_run import BuiltRun, FitState
from dltrain.dry_run import dry_run
from dltrain.errors import ConfigError
from dltrain.loop import evaluate, fit
from dltrain.safetensors_files import save_safetensors
from dltrain.step import DivergedError
from dltrain.trainer_options import WHERE_TO_TRAIN
from dltrain.world import World, joined

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """Train and test one configuration; writes the run dir and returns the metrics.json dict."""
    with joined(one_rank=cfg.trainer.get("strategy") == "ddp") as world:
        return run_rank(cfg, Path(run_dir), world, console)


def run_rank(
    cfg: DictConfig, run_dir: Path, world: World, console: Console | None = None
) -> dict[str, Any]:
    """run() in one process, one of `world`'s ranks (only rank 0 writes)."""
    started = time.perf_counter()
    plugins.for_run(cfg)  # the command's own: a run dir's are vouched for before (resume.py)
    saved, path = None, None
    if cfg.get("resume"):  # the same run dir, the checkpoint's config (epochs may change)
        path = checkpoints.resume_path(cfg.resume)
        saved = checkpoints.load_for_resume(path)
        cfg = resumed_config(cfg, saved, path)
        run_dir = path.parent.parent
        if world.main:  # temp files of writes that a kill cut short
            for folder in (run_dir, run_dir / "checkpoints"):
                files.remove_orphans(folder)
    try:
        built = build_run(cfg, Path(run_dir), console, saved["step"] if saved else None, world)
    except Exception as e:
        if not saved and world.main:  # a new run dir says why it holds no run; not a resumed one
            failed = {"status": "failed", "error": f"{type(e).__name__}: {e}", "step": 0}
            files.save_json_atomic(failed, Path(run_dir) / "metrics.json")
        raise
    if built.trainer.dry_run:  # one batch each way, a report, no checkpoints or metrics
        with built.tracker:
            return {"status": "dry_run", **dry_run(built)}
    startup_gc.resume()  # built: training makes garbage to collect
    state = FitState()
    if saved:
        try:
            training_state.restore(built, state, saved, path)
        except ConfigError:
            built.tracker.close()
            raise
        log.info(f"resumed {run_dir} after epoch {state.epoch} + {state.progress.samples} samples")
    return fit_and_test(built, state, started)


def fit_and_test(built: BuiltRun, state: FitState, started: float) -> dict[str, Any]:
    """Fit, test the best weights, and write metrics.json whatever happens (rank 0)."""
    summary: dict[str, Any] = {}
    try:
        fit(built, state)
        summary = {"status": "completed", **test_best(built, state)}
    except BaseException as e:
        status = (
            "diverged"
            if isinstance(e, DivergedError)
            else "interrupted"
            if isinstance(e, KeyboardInterrupt)
            else "failed"
        )
        summary = {"status": status, "error": f"{type(e).__name__}: {e}", "step": state.step}
        raise
    finally:
        summary.update(
            wall_time_s=round(time.perf_counter() - started, 3),
            seed=built.trainer.seed,
            device=str(built.context.device),
            precision=built.trainer.precision,  # what `auto` chose, as the run trained
            channels_last=built.trainer.channels_last,
            threads=built.trainer.threads,
            epochs_completed=state.epoch,
            tags=list(built.cfg.get("tags") or []),
            notes=built.cfg.get("notes"),
        )
        try:
            built.callbacks.fire("teardown", built, state)
        except Exception as e:  # cleanup: the run's own outcome (or error) is what counts
            log.error(f"a callback's teardown failed: {type(e).__name__}: {e}")
        if built.world.main:
            finish_run_dir(built, summary)
        built.tracker.close(summary.get("status", "failed"))
    return summary


def finish_run_dir(built: BuiltRun, summary: dict[str, Any]) -> None:
    """metrics.json, then the run's files to the loggers that keep them; metrics.json says
    which loggers stopped logging, and why."""
    path = built.run_dir / "metrics.json"
    try:
        files.save_json_atomic({**summary, "not_logged": built.tracker.not_logged}, path)
        kept = ["config.yaml", "metrics.json", "model.pt", "model.safetensors", *visuals.PNG_FILES]
        built.tracker.artifacts([built.run_dir / name for name in kept])
        built.tracker.flush()
        summary["not_logged"] = built.tracker.not_logged
        files.save_json_atomic(summary, path)  # a logger that failed on the artifacts
    except files.SaveError as e:  # a full disk: the error that got here counts
        log.error(f"no metrics.json: {e}")


def resumed_config(cfg: DictConfig, saved: dict[str, Any], path: Path) -> DictConfig:
    """The checkpoint's config, with `cfg`'s trainer.epochs and where to train (ConfigError if the
    run trained past those epochs); nothing else of `cfg` counts.

    `cfg` holds the saved values but for what a command line gave: `dltrain resume=` refuses the
    rest (dltrain.resume), and a resumed sweep's job has the overrides of the job it continues.
    Its composed defaults (a null seed) are no one's request, so nothing is compared or warned of.
    """
    if problem := checkpoints.epochs_problem(saved, cfg.trainer.epochs):
        raise ConfigError(problem)
    config = checkpoints.saved_config(saved["config"], path)
    config.trainer.epochs = cfg.trainer.epochs
    config.plugins = list(cfg.get("plugins") or [])  # the command's, imported already
    for key in WHERE_TO_TRAIN:  # where it goes on is the new command's choice
        OmegaConf.update(config, key, OmegaConf.select(cfg, key), force_add=True)
    config.resume = str(path)
    return config


def test_best(built: BuiltRun, state: FitState) -> dict[str, Any]:
    """Restore the best epoch (weights and callbacks), test it, save model.pt, log the metrics.

    What is tested and saved is `built.evaluated`: the weights, or a callback's average of them.
    Every rank evaluates its share (the metrics are gathered); rank 0 alone writes and draws.
    """
    main, world = built.world.main, built.world
    states = None
    if main:
        best = checkpoints.load_checkpoint(built.run_dir / "checkpoints" / "best.pt")
        built.model.load_state_dict(best["model"])
        states = best.get("callbacks") or {}
    world.broadcast_state(built.model)  # rank 0 read best.pt: the others need not see it
    # The best epoch's averaged weights, if a callback averages them (the same on every rank).
    built.callbacks.load_state_dict(world.broadcast_object(states), evaluating_only=True)
    final_model = built.evaluated
    if main:
        files.save_torch(final_model.state_dict(), built.run_dir / "model.pt")
        save_safetensors(final_model.state_dict(), built.run_dir / "model.safetensors")
    final = {k: v for k, v in state.best_metrics.items() if k.startswith("val/")}
    matrices, scored = {}, {}
    task = built.data.meta.task
    if "test" in built.batches:
        test, *scored["test"] = evaluate(
            final_model, built.batches["test"], built.loss_fn, built.context, task, "test"
        )
        final.update(test)
        built.tracker.scalars(test, state.step)
        if main:
            matrices = visuals.test_visuals(built, *scored["test"], state.step)
    elif task == "reconstruction" and main:
        visuals.latent_space(built, state.step)
    if task == "binary":  # ROC curves of every split, with the best weights
        for split in ("train", "val"):
            if split in built.batches:
                batches = built.batches[split]
                _, *scored[split] = evaluate(
                    final_model, batches, built.loss_fn, built.context, task, ""
                )
        if main:
            visuals.roc_figure(built, scored, state.step)
    log_final(built, state, final)
    built.callbacks.fire("on_test_end", built, state, final)
    return {
        "metrics": final,
        "last_metrics": state.last_metrics,
        "best_epoch": state.best_epoch,
        "monitor": built.trainer.monitor,
        "stopped_early": state.stopped_early,
        "confusion_matrix": matrices,
        "steps": state.step,
    }


def log_final(built: BuiltRun, state: FitState, final: dict[str, float]) -> None:
    """The best val and the test metrics: as scalars, in HPARAMS and as the console's table."""
    best_val = {f"best/{k}": v for k, v in final.items() if k.startswith("val/")}
    built.tracker.scalars(best_val, state.step)
    built.tracker.hparams({**best_val, **{k: v for k, v in final.items() if k.startswith("test/")}})
    built.tracker.results(
        f"{built.cfg.model.name} on {built.cfg.dataset.name}",
        f"best epoch {state.best_epoch} of {state.epoch} by {built.trainer.monitor}",
        final,
        next_commands(built.run_dir, built.trainer.epochs, list(built.cfg.get("plugins") or [])),
    )


def next_commands(run_dir: Path, epochs: int, plugins: list[str]) -> dict[str, str]:
    """Where the run is, and the commands that evaluate it and train it on (as a shell reads
    them; plugins given again, which vouches for them)."""
    given = [f"plugins=[{','.join(plugins)}]"] if plugins else []
    evaluate = ["dltrain-eval", str(run_dir), *given]
    resume = ["dltrain", f"resume={run_dir}", f"trainer.epochs={2 * epochs}", *given]
    return {
        "run dir": str(run_dir),
        "evaluate": shlex.join(evaluate),
        "train on": shlex.join(resume),
    }
