#!/usr/bin/env bash
# How many neurons, layers, which activation? A grid over depth x width x activation (10 seeds) on MNIST-1D
# and digits, plus linear (depth 0); then the same question put to the mlp_nas Optuna search on MNIST-1D
# with the same training budget. Sweep dirs: multirun/capacity/<name>; a rerun resumes or skips.
#   bash experiments/capacity/run.sh       (from anywhere; ~10 min on one core)
# The grids' seeds train as fused groups (hydra.sweeper.fuse, the default); UNFUSED=1 also runs each grid
# unfused in <name>_unfused, to time the two. Wall times are appended to multirun/capacity/walltimes.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TRAIN="optim.lr=1e-2 trainer.epochs=30 trainer.batch_size=100 trainer.progress=false"
SHAPES='[16],[64],[256],[16,16],[64,64],[256,256],[16,16,16],[64,64,64],[256,256,256]'
SEEDS='range(10)'
mkdir -p multirun/capacity
timed() {  # name, command...: run it, append "name seconds" to walltimes.txt
  local name=$1; shift
  local start=$(date +%s.%N)
  "$@"
  echo "$name $(echo "$(date +%s.%N) - $start" | bc)" >> multirun/capacity/walltimes.txt
}

for data in mnist1d digits; do
  timed ${data}_linear $PY -m logitlab.train -m data=$data model=linear $TRAIN seed=$SEEDS \
    hydra.sweep.dir=multirun/capacity/${data}_linear
  timed ${data}_grid $PY -m logitlab.train -m data=$data model=mlp "model.hidden=$SHAPES" \
    model.activation=relu,tanh,gelu $TRAIN seed=$SEEDS hydra.sweep.dir=multirun/capacity/${data}_grid
  if [ -n "${UNFUSED:-}" ]; then
    timed ${data}_grid_unfused $PY -m logitlab.train -m data=$data model=mlp "model.hidden=$SHAPES" \
      model.activation=relu,tanh,gelu $TRAIN seed=$SEEDS hydra.sweeper.fuse=false hydra.sweep.dir=multirun/capacity/${data}_grid_unfused
  fi
done
# The search (conf/hparams_search/mlp_nas.yaml): depth 1-4, a width per layer from 16..512, activation, dropout;
# its lr range is pinned to the grid's 1e-2 by $TRAIN. As the preset is, then with the median pruner waiting
# 10 epochs (the preset's prunes from epoch 1). Each study's best trial is then retrained over 10 seeds.
NAS="hparams_search=mlp_nas data=mnist1d $TRAIN hydra.sweeper.n_trials=${NAS_TRIALS:-30} hydra.sweeper.seed=0"
$PY -m logitlab.train -m $NAS hydra.sweep.dir=multirun/capacity/mnist1d_nas
$PY -m logitlab.train -m $NAS hydra.sweep.dir=multirun/capacity/mnist1d_nas_warmup \
  'hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:5,n_warmup_steps:10}'
set -f  # the overrides hold [..] lists: no globbing
for study in mnist1d_nas mnist1d_nas_warmup; do
  best=$($PY experiments/best_overrides.py multirun/capacity/$study/summary.csv)
  $PY -m logitlab.train -m data=mnist1d model=mlp $best $TRAIN seed=$SEEDS hydra.sweep.dir=multirun/capacity/${study}_best
done
set +f
$PY experiments/capacity/report.py   # results.md, capacity.png
