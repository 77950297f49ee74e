"""What a run directory promises: it belongs to one config, and rerunning the command that made it (its
exact resume command is printed when a run stops) continues it or returns its finished result.

Plain Python and OmegaConf: the command-line check, the entry point and the trainer all use it."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable


# Keys a rerun may change: more epochs train on from where the run stopped; the rest do not touch results.
RESUMABLE_CHANGES = ("trainer.epochs", "trainer.progress", "trainer.figures", "trainer.threads", "trainer.histograms",
                     "trainer.checkpoint_every_s", "trainer.eval_batch_size", "data.max_resident_gb")
# Keys added to the config since runs were first saved, with the value that means what their absence did:
# a run saved before augmentation existed trained with augment=none.
ADDED_SINCE = {"augment": {}}


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted.key: leaf value} of a nested dict (lists are leaves: a list of widths is one value)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def changed_keys(old: dict, new: dict, allowed: Iterable[str] = RESUMABLE_CHANGES) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every key whose value differs, except those in `allowed`.
    `trainer.epochs` may only grow: fewer epochs than a run already has would rewrite its history."""
    a, b = flatten(old), flatten(new)
    a.update({k: v for k, v in flatten(ADDED_SINCE).items() if k not in a and k in b})
    changed = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<unset>"), b.get(key, "<unset>")
        if va == vb:
            continue
        if key in allowed and not (key == "trainer.epochs" and _fewer(va, vb)):
            continue
        changed.append((key, va, vb))
    return changed


def _fewer(old: Any, new: Any) -> bool:
    """Whether `new` epochs are fewer than `old` (values of a config, or of overrides as text)."""
    try:
        return int(new) < int(old)
    except (TypeError, ValueError):
        return False


def describe(changed: list[tuple[str, Any, Any]], limit: int = 6) -> str:
    shown = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in changed[:limit])
    return shown + (f" and {len(changed) - limit} more" if len(changed) > limit else "")


def command(args: list[str], key: str, directory: Path, launcher: list[str] | None = None) -> str:
    """The command line that continues this run or sweep, to paste into a shell as is: the same arguments,
    its directory pinned (quoted for Hydra's override grammar, then for the shell).
    `launcher`: the words that started it data-parallel (`torchrun ...`, distributed.World.launcher)."""
    program = Path(sys.argv[0])
    if program.name.startswith("logitlab-"):  # a console script
        head = [program.name if _on_path(program.name, program) else str(program.absolute())]
    elif program.parent.name == "logitlab" and program.stem == "train":  # python -m logitlab.train
        head = [interpreter(), "-m", "logitlab.train"]
    else:
        head = [interpreter(), str(program.absolute())]
    if launcher:  # torchrun runs `-m module` and scripts with its own python; anything else with --no-python
        head = [*launcher, *(head[1:] if head[0] == interpreter() else ["--no-python", *head])]
    kept = [a for a in args if a.split("=", 1)[0].lstrip("+~") != key]
    return shlex.join(head + kept + [f"{key}={hydra_quoted(str(Path(directory).absolute()))}"])


def interpreter() -> str:
    """`python` where that names this interpreter in this shell, else this interpreter's path: a
    virtual environment that is not active in a new shell is still the one that has logitlab."""
    return "python" if _on_path("python", Path(sys.executable)) else sys.executable


def _on_path(name: str, program: Path) -> bool:
    found = shutil.which(name)
    # the same file in the same directory: a venv's python links to the system's, but is not it
    return found is not None and all(os.path.realpath(a) == os.path.realpath(b) for a, b in (
        (found, program), (Path(found).absolute().parent, program.absolute().parent)))


def hydra_quoted(value: str) -> str:
    """`value` as Hydra's override grammar reads it back: bare if it is plain, else quoted (a path with
    `=`, `,`, spaces or brackets is otherwise read as something else: a sweep, a list, a parse error)."""
    if re.fullmatch(r"[A-Za-z0-9_/.:@%+-]+", value):
        return value
    quote = '"' if '"' not in value else "'"
    body = value.replace("${", "\\${")  # a literal ${, not an interpolation
    # In quotes, backslashes are literal except before a quote or the end: those are doubled, quotes escaped
    body = re.sub(rf"(\\*)({quote}|$)", lambda m: m.group(1) * 2 + ("\\" + m.group(2) if m.group(2) else ""), body)
    return f"{quote}{body}{quote}"


def is_finished(directory: Path) -> bool:
    return (Path(directory) / "metrics.json").is_file()
