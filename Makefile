# `make demo` and `make test` set everything up on a fresh machine (Python 3.10+ needed).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# Pinned so that a fresh machine installs the same build as CI (it lies on this project's disks).
TORCH ?= torch==2.14.1
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo lint test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q $(TORCH)
	$(PYTHON) -m pip install -q -e '.[test,serve]'
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
