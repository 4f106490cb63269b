# One Makefile, the same commands on a laptop and in CI.
# Every target builds .venv from a bare machine when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A CPU build of torch: pip takes the local wheel when one is present; a bare `torch`
# requirement with no torch installed would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test check lint format bench docs clean

$(BIN)/python:
	@echo "stabletrain: creating $(VENV) (first run only)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "stabletrain: installing into $(VENV): $(TORCH_PIN) (CPU build) if no torch is present, then"
	@echo "  stabletrain with its dev, hf and lightning extras (transformers, lightning, tensorboard, ...);"
	@echo "  about 2 minutes on a bare machine, once"
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[dev,hf,lightning]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/stabletrain demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# the generated references (docs/reference-guard.md, docs/reference-cli.md); a test fails when stale
docs: $(STAMP)
	$(BIN)/python tools/gen_reference.py

bench: $(STAMP)
	$(BIN)/python bench/trainer_throughput.py
	$(BIN)/python bench/guard_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
