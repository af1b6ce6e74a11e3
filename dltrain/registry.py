"""One small registry mechanism for every pluggable component (models, datasets, losses, ...)."""

from __future__ import annotations

import builtins
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dltrain.errors import ConfigError, did_you_mean


class Registry:
    """Maps short snake_case names to builders (classes or functions) plus free-form info."""

    def __init__(self, kind: str, populate: str | None = None):
        self.kind = kind
        self._populate = populate  # module whose import registers this registry's entries
        self._builders: dict[str, Callable[..., Any]] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **info: Any) -> Callable[[Callable], Callable]:
        """Decorator registering a builder under `name`; `info` holds facts like fitting tasks."""

        def add(builder: Callable) -> Callable:
            if name in self._builders:
                raise RuntimeError(f"{self.kind} '{name}' is registered twice")
            self._builders[name] = builder
            self._info[name] = info
            return builder

        return add

    def _load(self) -> None:
        if self._populate:
            importlib.import_module(self._populate)

    def names(self) -> list[str]:
        """Sorted names of all registered entries."""
        self._load()
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._builders

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
        return self._builders[name]

    def info(self, name: str) -> dict[str, Any]:
        """The info given at registration."""
        self.get(name)
        return self._info[name]

    def check(
        self,
        name: Any,
        kwargs: Mapping[str, Any],
        runtime: Iterable[str] = (),
        path: str | None = None,
    ) -> list[str]:
        """Problems binding config `kwargs` (found at `path`) plus `runtime` names to `name`."""
        path = path or self.kind
        if name not in self:
            return [f"{path}: {self.unknown(name)}"]
        return check_kwargs(path, f"{self.kind} '{name}'", self._builders[name], kwargs, runtime)

    def build(self, name: str, kwargs: Mapping[str, Any], **runtime: Any) -> Any:
        """Check, then call the builder with config `kwargs` and the runtime values it accepts."""
        accepted = _parameters(self.get(name))
        runtime = {k: v for k, v in runtime.items() if k in accepted}
        problems = self.check(name, kwargs, runtime)
        if problems:
            raise ConfigError(problems)
        try:
            return self._builders[name](**kwargs, **runtime)
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

    def accepts(self, name: str, option: str) -> bool:
        """Whether the builder of `name` takes the keyword `option`."""
        return option in _parameters(self.get(name))


def check_kwargs(
    path: str,
    what: str,
    builder: Callable,
    kwargs: Mapping[str, Any],
    runtime: Iterable[str] = (),
) -> list[str]:
    """Problems binding config `kwargs` (at config `path`) to the signature of `what`'s builder."""
    params = _parameters(builder)
    runtime = set(runtime)
    allowed = [p for p in params if p not in runtime]
    problems = []
    for key, value in kwargs.items():
        if key not in allowed:
            problems.append(
                f"{path}.{key}: {what} has no option '{key}'.{did_you_mean(key, allowed)} "
                f"Options: {', '.join(allowed) or '(none)'}"
            )
        elif (expected := _type_mismatch(params[key], value)) is not None:
            problems.append(f"{path}.{key}: must be {expected}")
    for pname, param in params.items():
        required = param.default is inspect.Parameter.empty
        if required and pname not in kwargs and pname not in runtime:
            problems.append(f"{path}.{pname}: required by {what} but not set")
    return problems


def _parameters(builder: Callable) -> dict[str, inspect.Parameter]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(builder).parameters.values()
    return {p.name: p for p in params if p.kind in kinds}


_SIMPLE = (bool, int, float, str, list, tuple, dict, type(None))


def _type_mismatch(param: inspect.Parameter, value: Any) -> str | None:
    """What was expected when `value` clearly does not fit the annotation, else None."""
    annotation = _evaluate(param.annotation)
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        if value in choices:
            return None
        return (
            f"one of {', '.join(map(str, choices))}, got {value!r}."
            f"{did_you_mean(value, map(str, choices))}"
        )
    allowed = _simple_types(annotation)
    if not allowed:
        return None  # unannotated or exotic annotation: nothing we can judge
    if isinstance(value, bool):
        ok = bool in allowed
    elif isinstance(value, int):
        ok = int in allowed or float in allowed
    elif isinstance(value, Mapping):
        ok = dict in allowed
    elif isinstance(value, Iterable) and not isinstance(value, str):
        ok = list in allowed or tuple in allowed
    else:
        ok = isinstance(value, tuple(allowed))
    if ok:
        return None
    names = sorted("null" if t is type(None) else t.__name__ for t in allowed)
    return f"{' or '.join(names)}, got {value!r}"


def _evaluate(annotation: Any) -> Any:
    """Turn a postponed (string) annotation into an object; unknown names give Parameter.empty."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, {**vars(builtins), **vars(typing)})  # noqa: S307
    except Exception:
        return inspect.Parameter.empty


def _simple_types(annotation: Any) -> set[type]:
    """The builtin types an annotation admits; empty when it admits no simple builtin."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return set()
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        # Parts a config cannot express (a Tensor) are ignored: Union[float, Tensor] -> float.
        return set().union(*(_simple_types(arg) for arg in typing.get_args(annotation)))
    if origin is not None:
        annotation = origin
    if annotation is None:
        return {type(None)}
    return {annotation} if annotation in _SIMPLE else set()


MODELS = Registry("model", populate="dltrain.models")
DATASETS = Registry("dataset", populate="dltrain.data")
LOSSES = Registry("loss", populate="dltrain.losses")
OPTIMIZERS = Registry("optimizer", populate="dltrain.optim")
SCHEDULERS = Registry("scheduler", populate="dltrain.optim")
REGULARIZERS = Registry("regularization", populate="dltrain.regularization")
INITIALIZERS = Registry("init", populate="dltrain.models.init")
