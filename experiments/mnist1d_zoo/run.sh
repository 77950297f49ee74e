#!/usr/bin/env bash
# MNIST-1D zoo with the paper's settings (Greydanus & Kobak): Adam lr 1e-2, batch 100, ~6000 steps.
# 3800 train / 200 val (data.val_fraction=0.05, carved from the 4000) / 1000 test: 158 epochs x 38 steps = 6004.
# Each run's metrics.json lands in multirun/mnist1d_zoo/<model>/<seed>; a rerun skips finished runs.
#   bash experiments/mnist1d_zoo/run.sh            (from anywhere; ~30 min on one core)
# Ten seeds a model; linear, mlp and cnn train their seeds as fused groups (hydra.sweeper.fuse, the default),
# gru and attention one by one. UNFUSED=1 also runs the fused cells unfused in <name>_unfused, to time the
# two. Wall times are appended to multirun/mnist1d_zoo/walltimes.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # small models: one thread each is as fast, and shares the CPU
COMMON="data=mnist1d data.val_fraction=0.05 trainer.batch_size=100 trainer.progress=false"

SEEDS='range(10)'
mkdir -p multirun/mnist1d_zoo
sweep() {  # name, overrides...: one sweep, its wall time appended to walltimes.txt
  local name=$1; shift
  local start=$(date +%s.%N)
  $PY -m logitlab.train -m $COMMON "$@" hydra.sweep.dir=multirun/mnist1d_zoo/$name
  echo "$name $(echo "$(date +%s.%N) - $start" | bc)" >> multirun/mnist1d_zoo/walltimes.txt
}
fused_sweep() {  # name, overrides...: as sweep, and with UNFUSED=1 once more unfused
  sweep "$@"
  if [ -n "${UNFUSED:-}" ]; then
    local name=$1; shift
    sweep ${name}_unfused "$@" hydra.sweeper.fuse=false
  fi
}
fused_sweep linear    model=linear optim.lr=1e-2 trainer.epochs=158 seed=$SEEDS
fused_sweep mlp       model=mlp 'model.hidden=[100,100]' optim.lr=1e-2 trainer.epochs=158 seed=$SEEDS
fused_sweep cnn       model=cnn 'model.channels=[25,25,25]' model.kernel_size=5 optim.lr=1e-2 trainer.epochs=158 seed=$SEEDS
# Fewer steps for the two slow ones on CPU (GRU: 40 sequential steps per example); these do not fuse.
sweep gru       model=gru optim.lr=1e-2 trainer.epochs=60 seed=$SEEDS
sweep attention model=attention optim.lr=3e-3 trainer.epochs=60 seed=$SEEDS

# Beyond the paper: the cnn_nas search (conf/hparams_search/cnn_nas.yaml: 1-3 blocks, channels per block,
# kernel, pooling, activation, lr; TPE), 30 epochs per trial, the median pruner waiting 10 epochs; then its
# best trial (by val/acc, then val/loss) retrained over 10 seeds for 60 epochs (2280 steps; the large winners
# cost ~4 min a seed on one core at the paper's 6000).
$PY -m logitlab.train -m hparams_search=cnn_nas $COMMON trainer.epochs=30 hydra.sweeper.n_trials=${CNN_TRIALS:-20} \
  'hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:5,n_warmup_steps:10}' \
  hydra.sweeper.seed=0 hydra.sweep.dir=multirun/mnist1d_zoo/cnn_nas
best=$($PY experiments/best_overrides.py multirun/mnist1d_zoo/cnn_nas/summary.csv)
set -f  # the overrides hold [..] lists: no globbing
sweep cnn_best model=cnn $best trainer.epochs=60 seed=$SEEDS

# The same search with batch norm as a choice and a cosine learning-rate decay (neither is in the preset's
# space): 12 trials of 20 epochs, the pruner waiting 5; the best retrained over 10 seeds for 40 epochs.
$PY -m logitlab.train -m hparams_search=cnn_nas $COMMON trainer.epochs=20 schedule=cosine model.batch_norm=true,false \
  hydra.sweeper.n_trials=${CNN_TRIALS_BN:-12} hydra.sweeper.seed=0 hydra.sweep.dir=multirun/mnist1d_zoo/cnn_nas_bn \
  'hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:5,n_warmup_steps:5}'
best=$($PY experiments/best_overrides.py multirun/mnist1d_zoo/cnn_nas_bn/summary.csv)
sweep cnn_best_bn model=cnn schedule=cosine $best trainer.epochs=40 seed=$SEEDS
set +f
$PY experiments/mnist1d_zoo/report.py
