"""The Weights & Biases backend: config, tags and notes at the start, scalars against the global
step, text, images and figures as media, the final metrics in the summary, the run's files.

Without an API key (WANDB_API_KEY, or a netrc entry for the W&B host) it runs offline: the run is
written to run_dir/wandb/offline-run-*/ and nothing touches the network; `wandb sync` uploads it.
W&B's service writes that folder's .wandb file every 15 s and when the run ends, so a process
killed outright loses at most the last 15 s of it.
"""

from __future__ import annotations

import glob
import hashlib
import html
import netrc
import os
import re
import secrets
import string
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from dltrain.errors import ConfigError
from dltrain.registry import LOGGERS
from dltrain.tracking.backend import Backend, RunInfo

MODES = ("online", "offline", "disabled")
STEP = "trainer/global_step"  # the x-axis of every chart: each row carries the step it was at
WANDB_ID = r"[A-Za-z0-9_-]{1,64}"  # what W&B takes as a run id (no / \ # ? % :)
MAX_TAG = 64  # W&B refuses longer tags
DEFAULT_HOSTS = ["api.wandb.ai", "api.forge.coreweave.com"]  # `wandb login` writes netrc for one


def api_key_configured() -> bool:
    """Whether W&B would find credentials (the environment, or netrc for its host) without
    asking: only then does the default mode go online."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    base_url = os.environ.get("WANDB_BASE_URL")
    hosts = [urlsplit(base_url).hostname or ""] if base_url else DEFAULT_HOSTS
    try:
        known = netrc.netrc(os.environ.get("NETRC") or Path.home() / ".netrc")
    except (OSError, netrc.NetrcParseError):
        return False
    return any((entry := known.authenticators(host)) and entry[2] for host in hosts)


def choose_mode(mode: str | None) -> str | None:
    """The mode to run in; None leaves it to WANDB_MODE when that is set."""
    if mode is not None and mode not in MODES:
        raise ConfigError(f"logger.wandb.mode: '{mode}' is not one of {', '.join(MODES)}")
    if mode is None and not os.environ.get("WANDB_MODE"):
        return "online" if api_key_configured() else "offline"
    if mode == "online" and not api_key_configured():  # W&B would ask for one, or fail late
        raise ConfigError(
            "logger.wandb.mode=online: no W&B API key (set WANDB_API_KEY or run `wandb login`), "
            "or leave mode unset to log offline"
        )
    return mode


def new_run_id() -> str:
    """A fresh id as W&B makes them: 8 base-36 digits (not from the seeded `random`)."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def sweep_group(sweep_dir: Path) -> str:
    """One group per sweep: its folder's name, and a hash of its path so two sweeps that share
    a name stay apart."""
    digest = hashlib.sha1(str(Path(sweep_dir).resolve()).encode()).hexdigest()[:8]
    return f"{Path(sweep_dir).name[:100]}-{digest}"


@LOGGERS.register("wandb", requires="wandb", extra="wandb")
class WandbBackend(Backend):
    """One W&B run per dltrain run, its id kept in run_dir/loggers.json so that a resumed run
    logs to the same W&B run (offline: a second offline-run-* folder with the same id, which
    `wandb sync` uploads into that one run, in order)."""

    def __init__(
        self,
        run: RunInfo,
        project: str = "dltrain",
        entity: str | None = None,
        group: str | None = None,
        name: str | None = None,
        mode: Literal["online", "offline", "disabled", None] = None,  # checked before a run dir
    ):
        mode = choose_mode(mode)
        if mode in ("offline", "disabled"):
            # wandb (0.31) posts its own usage metrics to the W&B host unless the process-wide
            # mode is offline, even for an offline run; this is its switch for them
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        import wandb

        self.wandb = wandb
        self.run_dir = Path(run.run_dir)
        run_id = run.saved_id("wandb")
        if run_id is None or not re.fullmatch(WANDB_ID, run_id):
            run_id = new_run_id()
            run.save_id("wandb", run_id)
        if group is None and run.sweep_dir is not None:
            group = sweep_group(run.sweep_dir)
        try:
            self.run = wandb.init(
                project=project,
                entity=entity,
                group=group,
                name=name or run.name,
                notes=run.notes or None,
                tags=[tag[:MAX_TAG] for tag in run.tags],
                config=run.config,
                allow_val_change=True,  # a resume may change the config (trainer.epochs)
                dir=str(self.run_dir),
                id=run_id,
                resume="allow",  # a new id is a new run; a saved one continues
                mode=mode,
                reinit="create_new",  # this run's own object: other runs in the process untouched
                settings=wandb.Settings(silent=True, console="off"),
            )
        except wandb.errors.UsageError as e:  # a project name W&B refuses, a tag too short...
            raise ConfigError(f"logger.wandb: {str(e).splitlines()[0]}") from None
        self.run.define_metric(STEP, hidden=True)
        self.run.define_metric("*", step_metric=STEP)

    def scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        # W&B's own step only grows within a process: several calls at one step (train, then
        # val, then best/test) and a resume going back to its checkpoint would be dropped by it
        self.run.log({"epoch": epoch, **values, STEP: step})

    def text(self, tag: str, markdown: str, step: int) -> None:
        shown = self.wandb.Html(f"<pre>{html.escape(markdown)}</pre>", inject=False)
        self.run.log({tag: shown, STEP: step})

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        self.run.summary.update(metrics)  # the config went in at the start

    def image(self, tag: str, grid: Any, step: int) -> None:
        pixels = (grid.detach().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        if pixels.shape[2] == 1:  # grey: (H, W), as PIL takes it
            pixels = pixels[:, :, 0]
        self.run.log({tag: self.wandb.Image(pixels), STEP: step})

    def figure(self, tag: str, fig: Any, step: int) -> None:
        self.run.log({tag: self.wandb.Image(fig), STEP: step})

    def artifacts(self, paths: list[Path]) -> None:
        """The files go with the run: linked into its files/ folder (as wandb.save would, less its
        warning), uploaded from there (offline: by `wandb sync`)."""
        if self.run.disabled:  # its files/ folder is a made-up one in the temp dir
            return
        base, files = self.run_dir.resolve(), Path(self.run.dir)
        for path in map(Path, paths):
            path = path.resolve()
            link = files / (path.relative_to(base) if path.is_relative_to(base) else path.name)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(path)
            self.run.save(glob.escape(str(link)), base_path=str(files), policy="now")

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "completed" else 1)
