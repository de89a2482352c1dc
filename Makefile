# cocoon-p2p — every target sets itself up; `make run` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install run stop test test-fast bench lint sim clean devnet

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	@echo ">> installing (llama-cpp-python compiles on first install: about 9 minutes, cached afterwards)"
	$(PIP) install -e '.[dev]'
	$(PY) -m cocoon_p2p.cli.main setup
	touch $(STAMP)

run: install
	$(VENV)/bin/cocoon-p2p demo --chain

stop:
	@test -x $(VENV)/bin/cocoon-p2p && $(VENV)/bin/cocoon-p2p devnet stop --dir .devnet || true

test: install
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 --reruns 1

test-fast: install
	$(PY) -m pytest -q -m "not slow" -x

bench: install
	$(PY) -m bench

lint: install
	$(VENV)/bin/ruff check cocoon_p2p simulations tests bench

sim: install
	$(PY) -m simulations run dht --nodes 500 --seed 1

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
