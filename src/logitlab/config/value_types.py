"""Whether a value from a config or the command line is of the type a component declares for it (its
`_target_`'s annotations), or of the type of the value it replaces. Plain Python: the command-line
check (check.py) asks it, so that `seed=abc` or `trainer.epochs=[3]` is one line before any run."""
from __future__ import annotations

import collections.abc as abc
import functools
import importlib
import inspect
import types
import typing
from typing import Any


@functools.lru_cache(maxsize=None)  # a sweep asks the same few targets for every job
def annotation(target: Any, name: str) -> Any:
    """The type `target` declares for its argument `name`; None where it declares none or is not found."""
    if not target:
        return None
    module, _, attr = str(target).rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
        function = obj.__init__ if inspect.isclass(obj) else obj
        if name not in inspect.signature(obj).parameters:
            return None
        hint = typing.get_type_hints(function).get(name)
    except Exception:  # an import error is for building to report; an annotation that does not resolve: none
        return None
    return None if hint is Any else hint


def type_of(default: Any) -> Any:
    """The type a default value stands for: numbers, booleans and lists (of one kind); a string or null
    default says nothing (auto, or a path, or null for "none" take other values too)."""
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return type(default)
    if isinstance(default, list):
        kinds = {type_of(v) for v in default}
        return list[kinds.pop()] if len(kinds) == 1 and None not in kinds else list
    return None


def fits(value: Any, hint: Any) -> bool | None:
    """Whether a plain config value (from YAML or an override) is of type `hint`; None where that cannot
    be told from here (a class of the component's own, a nested config it instantiates, a callable)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None) or hint is None:
        return value is None
    if origin in (typing.Union, types.UnionType):
        # what a config can spell (numbers, strings, lists) decides: `lr: float | Tensor` given "abc"
        # is no float, and a Tensor cannot be written in a config
        spelled = [fits(value, a) for a in args if _plain_type(a)]
        others = [fits(value, a) for a in args if not _plain_type(a)]
        if True in spelled + others:
            return True
        return False if spelled else None
    if origin is typing.Literal:
        return value in args
    if isinstance(value, dict) and "_target_" in value:
        return None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if (origin or hint) in (dict, abc.Mapping, abc.MutableMapping):
        return isinstance(value, dict)
    if (origin or hint) in (list, tuple, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection):
        if not isinstance(value, list):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and _all(fits(v, a) for v, a in zip(value, args))
        return _all(fits(v, args[0]) for v in value) if args else True
    return None


def _plain_type(hint: Any) -> bool:
    """Whether `hint` is a type a config spells directly: None, a number, a string, a list, a dict."""
    return (typing.get_origin(hint) or hint) in (type(None), None, bool, int, float, str, list, tuple, dict) \
        or typing.get_origin(hint) is not None and typing.get_origin(hint).__module__ == "collections.abc"


def _all(answers) -> bool | None:
    answers = list(answers)
    return False if False in answers else None if None in answers else True


def describe(hint: Any) -> str:
    """`hint` in words: "an integer", "a list of integers", "a number or null"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    if origin in (typing.Union, types.UnionType):
        plain = [describe(a) for a in args if a in names or typing.get_origin(a) is not None]
        return " or ".join(plain) or "of the type it takes"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is not None or hint in (list, tuple):
        inner = f" of {describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args and args[0] in names else ""
        return f"a list{inner}"
    return f"a {getattr(hint, '__name__', hint)}"
