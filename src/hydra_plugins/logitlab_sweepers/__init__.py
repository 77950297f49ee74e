"""logitlab's Hydra sweeper, `hydra/sweeper=logitlab`: with `sampler: null` a grid sweep that survives
failed jobs, otherwise an Optuna ask-and-tell study with conditional spaces, pruning and resume. Either
writes <sweep dir>/summary.csv and best.yaml at the end of a multirun; see config.py for the settings."""

