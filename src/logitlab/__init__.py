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
