# Hải Đăng — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# A throwaway SQLite file for `alembic check` (it compares the models with a migrated DB).
CHECK_DB = $(VENV)/alembic-check.db

.PHONY: run test check install dev clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when pyproject.toml changes; the stamp files remember what was installed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## run: create .venv if missing, install, migrate + seed, and start the service
run: install
	$(BIN)/haidang db upgrade
	exec $(BIN)/haidang serve

## test: create .venv if missing, install the dev extra, run the whole suite
test: dev
	$(BIN)/pytest $(PYTEST_ARGS)

## check: lint, format check, types, and migrations in step with the models
check: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	@rm -f $(CHECK_DB)
	DATABASE_URL=sqlite:///$(CHECK_DB) $(BIN)/alembic upgrade head
	DATABASE_URL=sqlite:///$(CHECK_DB) $(BIN)/alembic check
	@rm -f $(CHECK_DB)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
