"""The `key=value` command lines of predict, evaluate and export (the style of Hydra overrides), and the
console-script wrapper that turns a user's error into one line and an exit status."""
from __future__ import annotations

import os
import re
import sys
from typing import Callable

from logitlab import ConfigError


class UsageError(ConfigError):
    """A command line that does not parse, or that lacks an option the message names; the command exits
    with status 2."""


def parse_args(argv: list[str], options: dict[str, str | None], usage: str) -> dict[str, str]:
    """`key=value` arguments (the style of Hydra overrides) over the defaults in `options`; a default of
    None marks a required key. `-h`/`--help` prints `usage` and exits."""
    if any(a in ("-h", "--help") for a in argv):
        print(usage.strip())
        raise SystemExit(0)
    args = dict(options)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in options:
            what = f"unknown key {key!r}" if sep else f"{arg!r} is not key=value"
            raise UsageError(f"{what}; valid keys: {', '.join(options)}")
        args[key] = value
    missing = [k for k, v in args.items() if v is None]
    if missing:
        raise UsageError(f"{', '.join(f'{k}=...' for k in missing)} is required; valid keys: {', '.join(options)}")
    return args


def as_int(key: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise UsageError(f"{key}={value!r} must be an integer from {low} to {high}")
    return number


def as_modules(key: str, value: str) -> tuple[str, ...]:
    """`a,b.c` -> ("a", "b.c"): dotted module names, comma-separated ('' for none)."""
    names = tuple(name.strip() for name in value.split(",")) if value else ()
    bad = [name for name in names if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name)]
    if bad:
        raise UsageError(f"{key}={value!r}: {bad[0]!r} is not a module name; give modules, comma-separated "
                         f"({key}=mymodels or {key}=mymodels,mydata)")
    return names


def cli(command: Callable[..., None], options: dict[str, str | None], usage: str,
        argv: list[str] | None = None) -> None:
    """Run `command(**args)` for a console script: a user error is one line on stderr and exit status 1
    (2 for a command line that does not parse), never a traceback."""
    try:
        command(**parse_args(sys.argv[1:] if argv is None else argv, options, usage))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2 if isinstance(e, UsageError) else 1) from None
    except OSError as e:  # out= in a missing or unwritable directory, a full disk
        if isinstance(e, BrokenPipeError):  # `out=- | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
            raise SystemExit(0) from None
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        raise SystemExit(1) from None
