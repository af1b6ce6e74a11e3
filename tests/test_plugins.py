"""Your own code and configs: plugins, `target` components, user config folders, `dltrain init`.

A user project in a temp folder (its own module and conf/), run through the installed console
scripts as a user would. The plugin touches a marker file when it is imported, so a refusal can
be checked to have imported nothing.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from .helpers import PYTHON, TINY, checkout_env, dltrain, run_command, start_command

pytestmark = pytest.mark.slow  # every test runs commands
MY_MODELS = '''
import os
from pathlib import Path

from torch import nn

from dltrain.registry import MODELS

Path(os.environ.get("MARKER", os.devnull)).touch()


@MODELS.register("my_net", tasks=("binary", "multiclass"))
def my_net(in_features: int, out_features: int, width: int = 16) -> nn.Module:
    """A user's own model."""
    return nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, out_features))
'''
QUICK = ["dataset=iris", "trainer.device=cpu", "trainer.seed=0"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user project: my_models.py (a registered model) and conf/model/my_net.yaml."""
    folder = tmp_path / "project"
    (folder / "conf" / "model").mkdir(parents=True)
    (folder / "my_models.py").write_text(MY_MODELS)
    (folder / "conf" / "model" / "my_net.yaml").write_text("name: my_net\nwidth: 16\n")
    return folder


def command(cwd: Path, program: str, *args: str, marker: Path | None = None):
    """A console script run in `cwd`; the plugin touches `marker` if it is imported."""
    env = {**checkout_env(), "MARKER": str(marker or os.devnull)}
    return run_command(program, *args, cwd=cwd, env=env)


def test_a_user_project_trains_resumes_and_is_used_from_elsewhere(
    project: Path, tmp_path: Path
) -> None:
    mine = ["plugins=[my_models]", "--config-dir", "conf", "model=my_net", *QUICK]
    process = start_command(
        "dltrain", *mine, "trainer.epochs=3", "trainer.batch_size=1",
        "trainer.checkpoint_every_n_steps=5", "trainer.keep_checkpoints=50", "hydra.run.dir=run",
        cwd=project,
    )  # fmt: skip
    while not list((project / "run" / "checkpoints").glob("step-*.pt")):
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    refused = command(project, "dltrain", "resume=run")
    assert refused.returncode == 2 and "needs the plugins" in refused.stderr
    resumed = command(project, "dltrain", "resume=run", "plugins=[my_models]")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((project / "run" / "metrics.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3

    elsewhere, marker = tmp_path / "elsewhere", tmp_path / "imported"
    elsewhere.mkdir()
    run = str(project / "run")
    no = command(elsewhere, "dltrain-eval", run, marker=marker)
    assert no.returncode == 2 and not marker.exists()
    assert no.stderr.count("\n") == 1 and "my_models.py" in no.stderr
    assert command(elsewhere, "dltrain-eval", run, "trust_plugins=true").returncode == 0
    names = "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)"
    (elsewhere / "rows.csv").write_text(f"{names}\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    predicted = command(elsewhere, "dltrain-predict", run, "input=rows.csv", "plugins=[my_models]")
    assert predicted.returncode == 0, predicted.stderr
    exported = command(elsewhere, "dltrain-export", run, "format=safetensors", "trust_plugins=true")
    assert exported.returncode == 0, exported.stderr


def test_plugins_reach_every_process_a_command_starts(project: Path) -> None:
    mine = ["plugins=[my_models]", "--config-dir", "conf", "model=my_net", *QUICK]
    ddp = dltrain(project, *mine, "trainer.epochs=1", "trainer.devices=2", "hydra.run.dir=ddp")
    assert ddp.returncode == 0, ddp.stderr
    sweep = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.width=8,16"]
    jobs = dltrain(project, *mine, *sweep, "trainer.epochs=1", "hydra.sweep.dir=sweep")
    assert jobs.returncode == 0, jobs.stderr
    statuses = [
        json.loads(p.read_text())["status"] for p in (project / "sweep").rglob("metrics.json")
    ]
    assert statuses == ["completed", "completed"]


def test_plugin_and_config_mistakes_are_one_line_before_any_run_dir(project: Path) -> None:
    (project / "broken.py").write_text("raise ValueError('the plugin is broken')\n")
    (project / "twice.py").write_text(
        "from dltrain.registry import MODELS\nMODELS.register('mlp')(lambda: None)\n"
    )
    cases = {
        ("plugins=[no_such_module]",): "plugins: no module named 'no_such_module'",
        ("plugins=[./missing.py]",): "plugins: no such file",
        ("plugins=[broken]",): "importing",
        ("plugins=[twice]",): "registers model 'mlp', a name already taken",
        ("--config-dir", "conf", "model=my_nett"): "Did you mean 'my_net'?",
        ("--config-dir", "conf", "model=my_net", "trainer.batch_size=0"): "unknown model 'my_net'",
        ("--config-dir", "nowhere"): "--config-dir:",
        ("model=target", "model.target=nowhere.nets:Net"): "cannot import 'nowhere.nets'",
    }
    for args, expected in cases.items():
        result = dltrain(project, *args, *QUICK)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (project / "outputs").exists()


def test_a_target_component_trains_and_its_options_are_checked(tmp_path: Path) -> None:
    (tmp_path / "nets.py").write_text(
        "from torch import nn\n\n"
        "class Tiny(nn.Sequential):\n"
        "    def __init__(self, in_features: int, out_features: int, width: int = 8):\n"
        "        super().__init__(nn.Linear(in_features, width), nn.Linear(width, out_features))\n"
    )
    target = ["model=target", "model.target=nets:Tiny", *TINY]
    wrong = dltrain(tmp_path, *target, "+model.widht=4")
    assert wrong.returncode == 2 and "Did you mean 'width'?" in wrong.stderr
    assert not (tmp_path / "outputs").exists()
    trained = dltrain(tmp_path, *target, "+model.width=4", "hydra.run.dir=run")
    assert trained.returncode == 0, trained.stderr
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "target: nets:Tiny" in config and "width: 4" in config


def test_a_plain_torch_dataset_trains_and_evaluates(tmp_path: Path) -> None:
    (tmp_path / "data.py").write_text(
        "import torch\nfrom torch.utils.data import TensorDataset\n\n"
        "def points(n: int = 300):\n"
        "    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))\n"
        "    return TensorDataset(x, (x.sum(1) > 0).long())\n"
    )
    data = [
        "dataset=target",
        "dataset.target=data:points",
        "trainer.device=cpu",
        "hydra.run.dir=run",
    ]
    trained = dltrain(tmp_path, *data, "trainer.epochs=3")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["metrics"]["test/acc"] > 0.6  # split off the one Dataset: 70/15/15
    evaluated = command(tmp_path, "dltrain-eval", "run", "trust_plugins=true")
    assert evaluated.returncode == 0, evaluated.stderr


def test_dltrain_init_trains_with_its_readme_command(tmp_path: Path) -> None:
    made = command(tmp_path, "dltrain", "init", "demo")
    assert made.returncode == 0, made.stderr
    project = tmp_path / "demo"
    readme = (project / "README.md").read_text()
    assert "dltrain experiment=demo " in readme
    trained = command(project, "dltrain", "experiment=demo")
    assert trained.returncode == 0, trained.stderr
    [summary] = [json.loads(p.read_text()) for p in (project / "outputs").rglob("metrics.json")]
    assert summary["status"] == "completed" and summary["metrics"]["test/acc"] > 0.7
    tests = run_command(
        PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=project
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    again = command(tmp_path, "dltrain", "init", "demo")
    assert again.returncode == 2 and "exists and is not empty" in again.stderr


def test_an_installed_plugin_adds_a_model_and_its_config(tmp_path: Path) -> None:
    source = tmp_path / "fixture"
    package = source / "dltrain_fixture"
    (package / "conf" / "model").mkdir(parents=True)
    (package / "__init__.py").write_text(
        MY_MODELS.replace('"my_net"', '"fixture_net"').replace("def my_net", "def fixture_net")
    )
    (package / "conf" / "model" / "fixture_net.yaml").write_text("name: fixture_net\nwidth: 8\n")
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "dltrain-fixture"\nversion = "0.1"\n\n'
        '[project.entry-points."dltrain.plugins"]\nfixture = "dltrain_fixture"\n'
    )
    site = tmp_path / "site"
    pip = ["-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", site]
    run_command(PYTHON, *pip, source, check=True)
    env = checkout_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    listed = dltrain(tmp_path, "--help", env=env)
    assert "fixture_net" in listed.stdout
    trained = dltrain(tmp_path, "model=fixture_net", *QUICK, "trainer.epochs=1", env=env)
    assert trained.returncode == 0, trained.stderr


def test_a_users_experiment_in_hydra_searchpath_is_checked_and_runs(project: Path) -> None:
    (project / "conf" / "experiment").mkdir()
    (project / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: my_net\n\ntrainer:\n  epochs: 1\n"
    )
    searchpath = f"hydra.searchpath=[file://{project / 'conf'}]"
    typo = dltrain(project, "plugins=[my_models]", searchpath, "experiment=mien", *QUICK)
    assert typo.returncode == 2 and "Did you mean 'mine'?" in typo.stderr
    ran = dltrain(project, "plugins=[my_models]", searchpath, "experiment=mine", *QUICK)
    assert ran.returncode == 0, ran.stderr


MY_HOOKS = '''
import json

from dltrain.callback import Callback
from dltrain.registry import CALLBACKS


@CALLBACKS.register("count_steps")
class CountSteps(Callback):
    """Counts optimiser steps across a resume; writes the count when the run is tested."""

    def __init__(self, out: str = "steps.json"):
        self.out, self.steps = out, 0

    def on_step_end(self, run, state):
        self.steps += 1

    def on_test_end(self, run, state, metrics):
        (run.run_dir / self.out).write_text(json.dumps({"mine": self.steps, "run": state.step}))

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = int(state["steps"])
'''


def test_a_plugin_callback_runs_keeps_its_state_across_a_resume(project: Path) -> None:
    (project / "my_hooks.py").write_text(MY_HOOKS)
    (conf := project / "conf" / "callbacks").mkdir()
    (conf / "count_steps.yaml").write_text("count_steps:\n  out: n.json\n")
    mine = ["plugins=[my_hooks]", "--config-dir", "conf", "callbacks=[count_steps]", *QUICK]
    first = command(project, "dltrain", *mine, "trainer.epochs=2", "hydra.run.dir=run")
    assert first.returncode == 0, first.stderr
    assert json.loads((project / "run" / "n.json").read_text()) == {"mine": 4, "run": 4}
    more = command(project, "dltrain", "resume=run", "trainer.epochs=3", "plugins=[my_hooks]")
    assert more.returncode == 0, more.stderr
    assert json.loads((project / "run" / "n.json").read_text()) == {"mine": 6, "run": 6}
    typo = command(project, "dltrain", *mine, "callbacks.count_steps.outt=x")
    assert typo.returncode == 2 and "Did you mean" in typo.stderr and "out" in typo.stderr
