# Two entry points, both self-contained on a fresh machine:
#   make demo   create .venv, install vitkit, run the main job
#   make test   create .venv, install vitkit with its dev tools, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
DEVSTAMP = $(VENV)/.installed-dev

.PHONY: demo test test-all lint install clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e .
	touch $(STAMP)

$(DEVSTAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(PIP) install -q -c constraints.txt --no-deps timm
	touch $(DEVSTAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m vitkit demo

test: $(DEVSTAMP)
	$(PY) -m pytest -q

test-all: $(DEVSTAMP)
	$(PY) -m pytest -q -m ''

lint: $(DEVSTAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info
