# The two commands a newcomer needs (see README.md):
#   make run    set up .venv with what running needs and run the main job on the built-in default workload (tiny,
#               one seed: a first result)
#   make test   add the test extras (pytest, transformers, wandb, tensorboard ...) to .venv and run the test suite
#
# TORCH picks the PyTorch build. torch==2.13.0 is the CPU build on machines that carry it locally and the CUDA
# build from PyPI elsewhere; GPU users may set e.g. TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.installed-core
DEV := $(VENV)/.installed-dev

.PHONY: run test setup clean

$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $(CORE)

$(DEV): $(CORE)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV)

setup: $(CORE)

run: $(CORE)
	$(BIN)/bench run --seeds 1

# Two pytest-xdist workers, a test file each at a time (a file's Ray session and prepared data are module-wide).
test: $(DEV)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -n 2 --dist loadfile --durations=20

clean:
	rm -rf $(VENV) build *.egg-info
