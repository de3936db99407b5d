# `make demo` and `make test` set everything up on a fresh machine (Python 3.10+ needed).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# Pinned so that a fresh machine installs the same build as CI (it lies on this project's disks).
TORCH ?= torch==2.14.1
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q $(TORCH)
	$(PYTHON) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rrdnet enhance examples/coffee_dark.png -o out --save-maps --contact-sheet

test: $(STAMP)
	$(PYTHON) -m pytest -q

clean:
	rm -rf $(VENV) out enhanced .pytest_cache
