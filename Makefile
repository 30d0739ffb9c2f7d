# The two commands a newcomer needs (see README.md):
#   make run    set up .venv and run the main job on the built-in default workload (tiny, one seed: a first result)
#   make test   set up .venv with test extras and run the test suite
#
# TORCH picks the PyTorch build. torch==2.13.0 is the CPU build on machines that carry it locally and the CUDA
# build from PyPI elsewhere; GPU users may set e.g. TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/bench run --seeds 1

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
