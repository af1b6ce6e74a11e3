"""Binding config options to a builder's signature: unknown keys, wrong types, missing ones.

A builder's keyword parameters are its options; their annotations say what values fit (simple
builtins, Literal choices, unions of them). Annotations that a config cannot express are not
judged.
"""

from __future__ import annotations

import builtins
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dltrain.errors import did_you_mean


def check_kwargs(
    path: str,
    what: str,
    builder: Callable,
    kwargs: Mapping[str, Any],
    runtime: Iterable[str] = (),
) -> list[str]:
    """Problems binding config `kwargs` (at config `path`) to the signature of `what`'s builder."""
    params = parameters(builder)
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


def parameters(builder: Callable) -> dict[str, inspect.Parameter]:
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
