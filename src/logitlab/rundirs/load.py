"""Finding and loading a trained run: its checkpoint file, the model and data rebuilt from the config the
checkpoint carries, and the weights loaded strictly. Two guards make a checkpoint from elsewhere safe to
open: it is unpickled with `weights_only=True` (no code runs while loading), and its config's data and
model `_target_`s must be logitlab's own data loaders and models, or code of a module the user trusts
(trust=mymodels on the command line): no other code named by a checkpoint runs."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from torch import nn

from logitlab.config import build
from logitlab.data.splits import SplitData
from logitlab.rundirs.cli import UsageError
from logitlab.trainer.checkpoint import CheckpointError, load as load_checkpoint

CHECKPOINTS = ("best", "last")
LOGITLAB_CODE = {"data": "logitlab.data", "model": "logitlab.models"}  # a config part -> what builds it


class UntrustedCode(UsageError, CheckpointError):
    """A checkpoint whose config names code the command line does not trust. The fix is an option
    (trust=MODULE), so the command exits 2, as for any command line that must change."""


def checkpoint_path(run: str | Path, checkpoint: str = "best") -> Path:
    """`run` is a run directory (its checkpoints/<checkpoint>.pt) or a checkpoint file."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.exists():
        raise CheckpointError(f"run={run} does not exist; give a run directory (outputs/DATE/TIME) "
                              f"or a checkpoint file")
    if checkpoint not in CHECKPOINTS:
        raise UsageError(f"checkpoint={checkpoint!r} is not known; valid: {', '.join(CHECKPOINTS)}")
    path = run / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        raise CheckpointError(f"run={run} has no checkpoints/{checkpoint}.pt; is it a training run directory?")
    return path


def run_dir_of(path: Path) -> Path:
    """The run directory a checkpoint file belongs to (where reports are written next to metrics.json)."""
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def load_run(run: str | Path, checkpoint: str = "best",
             trust: Sequence[str] = ()) -> tuple[nn.Module, SplitData, dict]:
    """The trained model (in eval mode, on the CPU), its data and its resolved config. `trust`: modules
    of the user's own whose code the config may name (see check_targets)."""
    path = checkpoint_path(run, checkpoint)
    state = load_checkpoint(path)
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{path} holds no model state_dict; it was not written by logitlab.train")
    check_targets(state.get("config"), trust, path)
    model, data = build.from_checkpoint(state.get("config"), str(path))
    load_weights(model, state["model"], path)
    return model.eval(), data, state["config"]


def check_targets(config: dict, trust: Sequence[str], origin: Path) -> None:
    """Refuse a config whose data or model names code that is neither logitlab's own for that part nor
    inside a module in `trust` (trust=mypkg covers mypkg.X and mypkg.models.X). Checked on the names
    first, before anything is imported (importing a module runs it), then on where each named object was
    defined: `mymodels.os.system` names os's code through a trusted module, not that module's own."""
    if not isinstance(config, dict):  # build.from_checkpoint says what is wrong with it
        return
    targets = [(key, target, (LOGITLAB_CODE[part], *trust))
               for part in LOGITLAB_CODE for key, target in _targets(config.get(part), part)]
    untrusted = [(key, target) for key, target, allowed in targets if not _inside(target, allowed)]
    if untrusted:
        named = " and ".join(f"{key}._target_={target!r}" for key, target in untrusted)
        what = f"is not a logitlab {_part_name(untrusted[0][0])}" if len(untrusted) == 1 else "are not logitlab's"
        modules = [*trust, *(target.split(".")[0] for _, target in untrusted)]
        raise UntrustedCode(f"{origin}: {named} {what}; code that a checkpoint names runs only from modules "
                            f"you trust: {_option(trust, modules)}")
    for key, target, allowed in targets:
        try:
            found = build.locate(target)
        except Exception:  # not importable here: building it says why, in one line
            continue
        defined_in = getattr(found, "__module__", None)
        if not isinstance(defined_in, str):
            raise UntrustedCode(f"{origin}: {key}._target_={target!r} is a {type(found).__name__}, not a class "
                                f"or function; refusing to build it")
        if not _inside(defined_in, allowed):
            root, name = defined_in.split(".")[0], getattr(found, "__qualname__", type(found).__qualname__)
            raise UntrustedCode(f"{origin}: {key}._target_={target!r} is {defined_in}.{name}, "
                                f"code of neither logitlab's {_part_name(key)}s nor a module you trust; if "
                                f"{root} is yours too: {_option(trust, [*trust, root])}")


def _targets(node, key: str) -> Iterator[tuple[str, str]]:
    """(key, target) for every `_target_` in a config node, nested ones too."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield key, str(node["_target_"])
        for k, v in node.items():
            yield from _targets(v, f"{key}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _targets(v, f"{key}[{i}]")


def _inside(dotted: str, modules: Sequence[str]) -> bool:
    return any(dotted == m or dotted.startswith(f"{m}.") for m in modules)


def _part_name(key: str) -> str:
    return "data loader" if key.split(".")[0].split("[")[0] == "data" else "model"


def _option(trust: Sequence[str], needed: Sequence[str]) -> str:
    """The exact option to give, with what was trusted already."""
    option = f"trust={','.join(dict.fromkeys(needed))}"
    return f"trust={','.join(trust)} does not cover it; give {option}" if trust else f"add {option}"


def load_weights(model: nn.Module, state_dict: dict, path: Path | str) -> None:
    """`load_state_dict(strict=True)`, with a mismatch reported as one line naming the keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    resized = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
               if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or resized:
        parts = [f"{what}: {_first(keys)}" for what, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", resized)) if keys]
        raise CheckpointError(f"{path} does not fit the {type(model).__name__} built from its config; "
                              + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def _first(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")
