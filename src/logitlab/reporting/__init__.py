"""What measures a model and shows the results: functions of tensors and files.

Neither Hydra nor the training loop is imported here, so that anything that reports can use it.

  scoring.py          scores from raw logits: the batched eval-mode forward pass, softmax, loss and accuracy
  diagnostics.py      where a classifier is wrong and whether its confidence holds: the confusion matrix,
                      per-class precision / recall / F1, calibration (ECE) and their figures
  tensorboard_log.py  everything a run writes for TensorBoard: scalars, HParams, figures, the model graph
  sweep_table.py      the table of a sweep's best jobs from its summary.csv (mean ± std over seeds)
  sweep_plots.py      a sweep's figures: the objective against parameters and swept values, importances

May import (of logitlab): only ConfigError.
"""
