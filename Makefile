# `make demo` and `make test` set everything up on a fresh machine (Python 3.10+ needed).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# torch, pinned so that a fresh machine installs the same build as CI (both lie on this project's
# disks). Without an NVIDIA GPU (no nvidia-smi answers), the CPU-only build: a one-photo command
# starts about 0.2 s sooner (its import loads no CUDA libraries) and the venv takes 1 GB instead of
# 6. Where that build cannot be had, the CUDA build, which runs on the CPU too. TORCH=... overrides.
TORCH_CUDA ?= torch==2.14.1
TORCH_CPU ?= torch==2.13.0+cpu
TORCH ?= $(if $(shell nvidia-smi -L 2>/dev/null),$(TORCH_CUDA),$(TORCH_CPU))
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo lint test clean

setup: $(STAMP)

# Last, the package's bytecode, compiled once: where PYTHONDONTWRITEBYTECODE is set, every command
# would otherwise compile it anew (0.05 s of a one-photo command).
$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q $(TORCH) 2>/dev/null || { \
		echo "setup: $(TORCH) cannot be had here; installing $(TORCH_CUDA)"; \
		$(PYTHON) -m pip install -q $(TORCH_CUDA); }
	$(PYTHON) -m pip install -q -e '.[test,serve]'
	$(PYTHON) -m compileall -q rrdnet_cli
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rrdnet enhance examples/coffee_dark.png -o out --save-maps --contact-sheet

# Lint (ruff), formatting (ruff format) and types (mypy, settings in pyproject.toml), then the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PYTHON) -m pytest -q

clean:
	rm -rf $(VENV) out enhanced .pytest_cache .mypy_cache .ruff_cache
