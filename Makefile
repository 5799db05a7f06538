# Two entry points, both self-contained on a fresh machine:
#   make demo   create .venv, install vitkit, run the main job
#   make test   create .venv, install vitkit with its dev tools, run the test suite
#   make ledger / make ledger-quick   check the accuracy ledger (benchmarks/ledger.json; docs/testing.md)
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
DEVSTAMP = $(VENV)/.installed-dev

.PHONY: demo test test-all lint install clean ledger ledger-quick

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e .
	touch $(STAMP)

$(DEVSTAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(PIP) install -q -c constraints.txt --no-deps timm
	# the browser test of `vitkit serve` drives Debian's chromium (playwright cannot download one here);
	# installed where apt-get is usable (root), else that test skips and says why
	command -v chromium >/dev/null || (apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) || true)
	touch $(DEVSTAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m vitkit demo

# every entry of the accuracy ledger with seeds 0, 1, 2 (about 90 minutes on 2 cores)
ledger: $(STAMP)
	$(PY) benchmarks/accuracy_ledger.py

# the quick subset with seed 0 (under 5 minutes; .ci/run runs it after the tests)
ledger-quick: $(STAMP)
	$(PY) benchmarks/accuracy_ledger.py --quick

test: $(DEVSTAMP)
	$(PY) -m pytest -q

test-all: $(DEVSTAMP)
	$(PY) -m pytest -q -m ''

lint: $(DEVSTAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info
