"""Config to objects, and the check of a command line before anything runs.

  build.py         the one place that calls Hydra's `instantiate`: a composed config (or the one a checkpoint
                   carries) becomes the trainer, the data, the model and the optimizer and schedule factories
  check.py         the Hydra callback that builds what a command describes (every job of a sweep too) before
                   Hydra makes a directory, so that a bad value costs one line, not a run
  hydra_errors.py  Hydra's own composition errors as one line naming the key and what would be valid
  value_types.py   whether a value is of the type its component declares for it (asked by the check)

Everything under this package receives finished objects and never sees a config.

May import (of logitlab): trainer. Data and models are named only by the configs' `_target_`s.
"""
