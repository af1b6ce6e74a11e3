"""One small registry mechanism for every pluggable component (models, datasets, losses, ...).

Each entry is a builder (a class or function taking flat keyword options) plus typed facts the
rest of dltrain reads (ModelInfo, DatasetInfo, LossInfo); each registry also names the runtime
values its builders may ask for, which the caller passes and a config cannot set.

Models and datasets are many modules, some importing heavy libraries (torchvision, pandas,
scikit-learn): their registries know each name's module from dltrain.registry_index and import
only the module of an entry that is asked for, so a run imports what it uses.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any

from dltrain.autoimport import import_submodules
from dltrain.errors import ConfigError, did_you_mean
from dltrain.registry_entries import (
    TASKS,
    DatasetInfo,
    LoggerInfo,
    LossInfo,
    ModelInfo,
    NoInfo,
    import_target,
)
from dltrain.registry_index import DATASET_MODULES, MODEL_MODULES
from dltrain.signatures import check_kwargs, parameters

TARGET = "target"  # the entry naming any importable callable: model=target model.target=a.b:C


class Registry:
    """Maps short snake_case names to builders (classes or functions) plus their typed info.

    A registry made with `target_info` also offers the entry `target`: its `target` option names
    an importable callable (`my_pkg.nets:MyNet`) whose signature its other options bind to.
    A registry made with an `index` (name -> module) imports an entry's module when the entry is
    first asked for; without one, its `populate` module is imported on first use.
    """

    def __init__(
        self,
        kind: str,
        populate: str | None = None,
        info: type = NoInfo,
        runtime: tuple[str, ...] = (),
        target_info: Any = None,
        index: Mapping[str, str] | None = None,
    ):
        self.kind = kind
        self.runtime = runtime  # values the caller passes to builders; never config options
        self._populate = populate  # module whose import registers this registry's entries
        self._info_type = info
        self._builders: dict[str, Callable[..., Any]] = {}
        self._info: dict[str, Any] = {}
        self._index = dict(index or {})  # dltrain's own entries: name -> the module registering it
        self.modules: dict[str, str] = {}  # name -> the module that registered it (see the tests)
        if target_info is not None:
            self._builders[TARGET], self._info[TARGET] = _no_target, target_info

    def register(self, name: str, **info: Any) -> Callable[[Callable], Callable]:
        """Decorator registering a builder under `name`; `info` fills this registry's info type."""
        known = {f.name for f in fields(self._info_type)}
        if unknown := sorted(set(info) - known):
            raise TypeError(
                f"{self.kind} '{name}': no registration info {', '.join(unknown)}; "
                f"{self._info_type.__name__} has {', '.join(sorted(known)) or 'none'}"
            )

        module = _importing_module()

        def add(builder: Callable) -> Callable:
            self._load()  # dltrain's own entries first: a plugin reusing a name is then caught
            owner = self._index.get(name)
            if name in self._builders or (owner is not None and owner != module):
                raise RuntimeError(f"{self.kind} '{name}' is registered twice")
            self._builders[name] = builder
            self._info[name] = self._info_type(**info)
            self.modules[name] = module
            return builder

        return add

    def _load(self) -> None:
        if self._populate and not self._index:
            importlib.import_module(self._populate)

    def _load_entry(self, name: object) -> None:
        """Import the module of an indexed entry not registered yet."""
        self._load()
        if name not in self._builders and isinstance(name, str) and name in self._index:
            importlib.import_module(self._index[name])

    def load_all(self) -> None:
        """Import every module of the populate package (what an index must agree with)."""
        self._load()
        if self._populate and self._index:
            package = importlib.import_module(self._populate)
            import_submodules(self._populate, package.__path__)

    def names(self) -> list[str]:
        """Sorted names of all registered entries (indexed ones without importing them)."""
        self._load()
        return sorted(set(self._builders) | set(self._index))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._builders or (isinstance(name, str) and name in self._index)

    def unknown(self, name: Any) -> str:
        """The message for a name that is not registered."""
        names = self.names()
        return (
            f"unknown {self.kind} '{name}'.{did_you_mean(name, names)} "
            f"Available: {', '.join(names)}"
        )

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered under `name`; ConfigError with suggestions otherwise."""
        if name not in self:
            raise ConfigError(self.unknown(name))
        self._load_entry(name)
        if name not in self._builders:  # the index names a module that does not register it
            raise RuntimeError(f"{self.kind} '{name}': {self._index[name]} does not register it")
        return self._builders[name]

    def info(self, name: str) -> Any:
        """The info given at registration (an instance of this registry's info type)."""
        self.get(name)
        return self._info[name]

    def builder(
        self, name: str, kwargs: Mapping[str, Any], path: str | None = None
    ) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The callable `name` stands for and the options it takes (`target`: the one named)."""
        builder, kwargs = self.get(name), dict(kwargs)
        if name == TARGET:
            builder = import_target(kwargs.pop(TARGET, None), f"{path or self.kind}.{TARGET}")
        return builder, kwargs

    def check(
        self,
        name: Any,
        kwargs: Mapping[str, Any],
        runtime: Iterable[str] | None = None,
        path: str | None = None,
    ) -> list[str]:
        """Problems binding config `kwargs` (found at `path`) to `name`'s builder; the runtime
        names (default: this registry's) are the caller's to pass, not the config's."""
        path = path or self.kind
        if name not in self:
            return [f"{path}: {self.unknown(name)}"]
        try:
            builder, kwargs = self.builder(name, kwargs, path)
        except ConfigError as e:
            return e.problems
        runtime = self.runtime if runtime is None else runtime
        what = f"{self.kind} '{name}'" if name != TARGET else f"{builder.__qualname__}"
        return check_kwargs(path, what, builder, kwargs, runtime)

    def build(self, name: str, kwargs: Mapping[str, Any], **runtime: Any) -> Any:
        """Check, then call the builder with config `kwargs` and the runtime values it accepts."""
        builder, options = self.builder(name, kwargs)
        accepted = parameters(builder)
        runtime = {k: v for k, v in runtime.items() if k in accepted}
        problems = self.check(name, kwargs, runtime)
        if problems:
            raise ConfigError(problems)
        try:
            return builder(**options, **runtime)
        except ValueError as e:  # torch and sklearn reject impossible values with ValueError
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{self.kind} ({name}): {e}") from e
        except (MemoryError, OverflowError, RuntimeError) as e:  # sizes no machine can hold
            if isinstance(e, RuntimeError) and "allocate" not in str(e):
                raise
            reason = " ".join(str(e).split())[:300] or type(e).__name__
            raise ConfigError(
                f"{self.kind} ({name}): cannot allocate what these options ask for ({reason})"
            ) from None

    def accepts(self, name: str, option: str, kwargs: Mapping[str, Any] | None = None) -> bool:
        """Whether the builder of `name` (configured by `kwargs`, for a target) takes `option`."""
        try:
            return option in parameters(self.builder(name, kwargs or {})[0])
        except ConfigError:
            return False


def _importing_module() -> str:
    """The module whose top-level code is running (whose import registers an entry)."""
    frame = sys._getframe(2)
    while frame.f_back is not None and frame.f_code.co_name != "<module>":
        frame = frame.f_back
    return str(frame.f_globals.get("__name__", ""))


def _no_target(**_: Any) -> None:
    """Stands for the `target` entry until its option names the callable."""


MODEL_RUNTIME = ("in_features", "out_features", "input_shape", "num_classes", "vocab")
MODELS = Registry(
    "model", "dltrain.models", ModelInfo, MODEL_RUNTIME, ModelInfo(tasks=TASKS), MODEL_MODULES
)
DATASETS = Registry(
    "dataset", "dltrain.data", DatasetInfo, target_info=DatasetInfo(), index=DATASET_MODULES
)
LOSSES = Registry("loss", "dltrain.losses", LossInfo, target_info=LossInfo(tasks=TASKS))
OPTIMIZERS = Registry("optimizer", "dltrain.optim", runtime=("params",), target_info=NoInfo())
SCHEDULER_RUNTIME = ("optimizer", "epochs", "steps_per_epoch")
SCHEDULERS = Registry("scheduler", "dltrain.optim", runtime=SCHEDULER_RUNTIME, target_info=NoInfo())
REGULARIZERS = Registry("regularization", "dltrain.regularization")
CALLBACKS = Registry(
    "callback", "dltrain.callbacks", runtime=("model", "epochs"), target_info=NoInfo()
)
LOGGERS = Registry(
    "logger", "dltrain.tracking.backends", LoggerInfo, runtime=("run",), target_info=LoggerInfo()
)
INITIALIZERS = Registry("init", "dltrain.models.init", runtime=("model",))
