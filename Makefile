# CTVMS: make run (serve the appliance) and make test (the whole suite).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run install test lint format bench audit messages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) appliance/locale/pt_BR/LC_MESSAGES/messages.mo

appliance/locale/pt_BR/LC_MESSAGES/messages.mo: appliance/locale/pt_BR/LC_MESSAGES/messages.po $(STAMP)
	$(BIN)/pybabel compile --use-fuzzy -d appliance/locale -D messages

run: install
	$(BIN)/ctvms init
	$(BIN)/ctvms run --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Seeds a 20,000-customer demo office and measures it (bench/README.md); BENCH_ARGS="--runs 3".
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# Known vulnerabilities in the installed dependencies (asks the PyPI advisory service online;
# --strict: a dependency that could not be checked fails the audit instead of passing quietly).
audit: install
	$(BIN)/pip-audit --skip-editable --strict

# Re-extract the message catalogue after changing user-visible strings.
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _ -k gettext -k ngettext:1,2 -o appliance/locale/messages.pot .
	$(BIN)/pybabel update -i appliance/locale/messages.pot -d appliance/locale -D messages --no-fuzzy-matching

clean:
	rm -rf $(VENV) .pytest_cache
