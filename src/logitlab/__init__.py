"""logitlab: config-driven multiclass classification experiments in PyTorch.

The entry points sit on top and nothing imports them: train, predict, evaluate, export and summary
(`python -m logitlab.<name>`). Below them, one subpackage per concern; each imports only those its
__init__.py names, and docs/architecture.md walks a run and a sweep through them:

  fused/      jobs of a sweep that differ only in values trained as one stacked model
  rundirs/    a run directory: what a training job leaves in it, and a trained run read back
  config/     config to objects (the one call of Hydra's instantiate) and the check of a command line
  trainer/    the training of one model: the loop, its state, checkpoints, data-parallel, threads
  data/       datasets as whole tensors with their normalisation
  models/     the model zoo
  reporting/  scores, figures, TensorBoard and a sweep's tables: no Hydra, no training loop

conf/ holds the configs: each config group is the registry of its options.
"""
from logitlab import _moved

_moved.install()  # the flat layout's module paths still import


class ConfigError(ValueError):
    """A user's input is invalid; the message is one line naming the key, value or file and what is valid."""


def names_on_first_use(package: str, names: dict[str, str]):
    """A package's `__getattr__` and `__dir__` (PEP 562) offering `names` (name -> the module of the package
    that defines it), each imported on first use: importing a light module of the package does not load
    the heavy one beside it. Used by the packages that kept the names of the flat modules they replaced."""
    import sys
    from importlib import import_module

    def __getattr__(name: str):
        if name in names:
            return getattr(import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*vars(sys.modules[package]), *names])

    return __getattr__, __dir__
