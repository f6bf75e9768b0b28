# The README's two commands: `make demo` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test test-retrain lint bench clean

install: $(STAMP)

# The browser tests drive Debian's chromium through Playwright (no browser download); install it if missing.
browser:
	@test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium) \
		|| (echo "need Debian's chromium for the browser tests: apt-get install chromium" && exit 1)

# CPU torch first (the local wheel), then the project editable with dev extras, so nothing upgrades torch.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: install browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist loadgroup -q -m "not retrain" tests

# Retrains a shipped demo artifact with the command recorded in its card and checks its headline number.
test-retrain: install
	$(PY) -m pytest -q -m retrain tests

# `make demo RETRAIN=1` trains every method's demo artifact anew instead of publishing the shipped ones.
demo: install
	$(PY) -m hubkit.demo $(if $(RETRAIN),--retrain)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) bench/bench_transfer.py
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_spm.py

clean:
	rm -rf $(VENV) .demo .bench .pytest_cache
