"""logitlab's Hydra sweepers: `grid` (the default: Hydra's grid sweep that survives failed jobs) and
`optuna` (ask-and-tell search with conditional spaces, pruning and resume). Both write
<sweep dir>/summary.csv and best.yaml at the end of a multirun; see config.py for their settings."""
