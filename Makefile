# The two quick-start commands: `make run` (the bot, local web chat by default) and `make test`
# (format, lint, types, tests). Each installs what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test check bench install

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/bot run

# Figures, not a test: writes bench/results/ (tables, JSON, plots). Takes about an hour.
bench: $(STAMP)
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[dev,bench]'
	$(PY) -m bench

test: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	bash scripts/install-browser.sh
	bash scripts/install-redis.sh
	$(PY) -m pytest -q
