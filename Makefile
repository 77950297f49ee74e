# The two commands a new user needs: `make train` and `make test`. Both set up everything first.
VENV   := .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install train test test-all tb tb-check bench clean experiments exp-zoo exp-from-logits exp-softmax-vs-logistic exp-capacity exp-own-table exp-augment

# Each command also compiles what changed in src/ (an editable install leaves that to the first import, and
# where nothing may write bytecode, PYTHONDONTWRITEBYTECODE=1, every process would compile it again).
install: $(VENV)/.installed
	@$(PY) -m compileall -q src

# Reinstalls only when pyproject.toml changes, so `make train` is quick once set up.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,onnx]'
	touch $@

train: install        ## the default experiment: softmax regression on 8x8 digits
	$(PY) -m logitlab.train $(ARGS)

test: install         ## the fast tests (a few minutes on 2 cores)
	$(PY) -m pytest

test-all: install     ## every test, including those marked slow (installs PostgreSQL for the shared-study tests)
	command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
	  || { sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
	$(PY) -m pip install -q -e '.[dev,onnx,postgres]'
	$(PY) -m pytest -m ""

tb: install           ## TensorBoard over every run and sweep
	$(VENV)/bin/tensorboard --logdir . --reload_multifile true

tb-check: install     ## HParams over a real sweep, read in headless Chromium (installs chromium and playwright)
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	  || { sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(PY) -m pip install -q playwright
	$(PY) tools/tb_check.py $(ARGS)

bench: install        ## the trainer vs a hand-written loop, Lightning and Keras; a PNG folder vs ImageFolder; resident vs streamed, uint8 vs float32; sweep wall times fused vs unfused vs eadd62d
	$(PY) -m pip install -q -e '.[dev,onnx,bench]'
	$(PY) bench/run.py
	$(PY) bench/folder.py
	$(PY) bench/resident.py
	$(PY) bench/overhead.py

experiments: exp-zoo exp-from-logits exp-softmax-vs-logistic exp-capacity exp-own-table exp-augment  ## every study in experiments/ (~45 min)

exp-zoo: install                   ## the MNIST-1D table and a cnn_nas search (~20 min)
	PY=$(PY) bash experiments/mnist1d_zoo/run.sh

exp-from-logits: install           ## softmax->log->NLL against logits->CrossEntropyLoss, fp32 and bf16 (~2 min)
	$(PY) experiments/from_logits/run.py

exp-softmax-vs-logistic: install   ## two-class softmax regression is logistic regression (seconds)
	$(PY) experiments/softmax_vs_logistic/run.py

exp-own-table: install             ## a table of your own with text categories and blank cells, against scikit-learn (~20 s)
	$(PY) experiments/own_table/run.py

exp-augment: install              ## does augment=crop help the digits CNN, and shift the MNIST-1D CNN? 10 seeds each (~5 min)
	$(PY) experiments/augment/run.py

exp-capacity: install              ## depth x width x activation grid against mlp_nas (~15 min)
	PY=$(PY) bash experiments/capacity/run.sh

clean:                ## remove run outputs (not the environment)
	rm -rf outputs multirun lightning_logs .pytest_cache
