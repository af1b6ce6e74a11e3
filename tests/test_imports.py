"""A run imports only what it uses: the registries' index of modules stays true, the pre-run check
imports no heavy library a selected component does not need, and it still catches every mistake."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dltrain.registry import DATASETS, MODELS, TARGET, Registry
from dltrain.registry_index import DATASET_MODULES, MODEL_MODULES

from .helpers import PYTHON, checkout_env, dltrain

HEAVY = ("torchvision", "sklearn", "pandas", "matplotlib", "scipy")


@pytest.mark.parametrize(
    ("registry", "index", "name"),
    [(MODELS, MODEL_MODULES, "MODEL_MODULES"), (DATASETS, DATASET_MODULES, "DATASET_MODULES")],
)
def test_the_index_names_the_module_of_every_registered_entry(
    registry: Registry, index: dict[str, str], name: str
) -> None:
    registry.load_all()  # every module of dltrain.models / dltrain.data
    own = {n: m for n, m in registry.modules.items() if m.startswith("dltrain.")}
    missing = [f'"{n}": "{m}",' for n, m in sorted(own.items()) if index.get(n) != m]
    assert not missing, f"add to {name} in dltrain/registry_index.py: {' '.join(missing)}"
    assert set(index) <= set(own), f"{name} names what no module registers"


def imported_by(code: str) -> dict[str, object]:
    """What a fresh interpreter running `code` (which prints a JSON object) reports."""
    result = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, env=checkout_env(), timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


CHECK = """
import json, sys
from dltrain.composition import compose_config
from dltrain.config import check_config
check_config(compose_config(*{overrides!r}), check_files=False)
print(json.dumps({{"heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def test_checking_the_default_config_imports_no_heavy_library() -> None:
    found = imported_by(CHECK.format(overrides=["trainer.device=cpu"], heavy=HEAVY))
    assert found["heavy"] == []


def test_a_torchvision_model_imports_torchvision_for_its_check() -> None:
    overrides = ["model=tv_model", "model.arch=resnet18", "dataset=mnist", "trainer.device=cpu"]
    found = imported_by(CHECK.format(overrides=overrides, heavy=HEAVY))
    assert "torchvision" in found["heavy"] and "sklearn" not in found["heavy"]


def test_a_typo_in_a_torchvision_model_option_is_caught_before_anything_runs(
    tmp_path: Path,
) -> None:
    result = dltrain(
        tmp_path, "model=tv_model", "model.arch=resnet18", "+model.dropot=0.1", "trainer.device=cpu"
    )
    assert result.returncode == 2, result.stderr
    assert "model.dropot" in result.stderr and "dropout" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "outputs").exists()  # nothing was started


def test_help_lists_every_registered_model_and_dataset(tmp_path: Path) -> None:
    result = dltrain(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    lines = {
        line.partition(": ")[0]: line.partition(": ")[2] for line in result.stdout.splitlines()
    }
    for group, registry in (("model", MODELS), ("dataset", DATASETS)):
        listed = set(lines[group].split(", "))
        assert set(registry.names()) - {TARGET} <= listed, group


def test_asking_for_one_entry_imports_only_its_module() -> None:
    code = f"""
import json, sys
from dltrain.registry import DATASETS, MODELS
MODELS.get("mlp"); DATASETS.get("iris")
print(json.dumps({{"modules": sorted(m for m in sys.modules if m.startswith(("dltrain.models.",
    "dltrain.data."))), "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""
    found = imported_by(code)
    assert "dltrain.models.tv_model" not in found["modules"]
    assert "dltrain.data.vision" not in found["modules"]
    assert found["heavy"] == []


def test_a_plugin_reusing_a_name_of_an_unimported_module_is_caught() -> None:
    code = """
import json
from dltrain.registry import MODELS
try:
    MODELS.register("tv_model")(lambda: None)
    print(json.dumps({"error": None}))
except RuntimeError as e:
    print(json.dumps({"error": str(e)}))
"""
    assert "registered twice" in str(imported_by(code)["error"])


WHOLE_JOB = """
import json, sys
from unittest import mock
from dltrain import cli
with mock.patch.object(sys, "argv", ["dltrain", *{overrides!r}]):
    try:
        cli.main()
    except SystemExit as e:
        assert not e.code, e.code
print(json.dumps({{"heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def test_the_default_job_trains_tests_and_saves_without_scikit_learn(tmp_path: Path) -> None:
    overrides = ["trainer.epochs=1", "trainer.device=cpu", f"hydra.run.dir={tmp_path / 'run'}"]
    found = imported_by(WHOLE_JOB.format(overrides=overrides, heavy=("sklearn", "pandas")))
    assert found["heavy"] == []
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
