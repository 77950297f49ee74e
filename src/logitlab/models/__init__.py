"""The model zoo: every model takes `input_shape` and `num_classes` (facts of the data) and returns raw logits.

  zoo.py   SoftmaxRegression, MLP, CNN, GRU and Attention, and the layers they share

A config names a model by its name here (conf/model/mlp.yaml: `_target_: logitlab.models.MLP`), as the
configs saved by earlier runs do.

May import (of logitlab): only ConfigError.
"""

from logitlab.models.zoo import ACTIVATIONS, Attention, Block, CNN, GRU, MLP, SoftmaxRegression, make_activation
