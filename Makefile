# Two commands for a fresh machine with Python >= 3.11:
#   make run    create .venv, install, start orch (embedded Redis, API, engine, workers) on examples/
#   make test   create .venv, install, run the linters (ruff, mypy) and the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROJECT ?= examples

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "orch needs Python >= 3.11; run: make PY=python3.11 ...")'
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "installing orch and its dependencies into $(VENV) ..."
	@$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/orch dev --project $(PROJECT)

# promtool (from Debian's prometheus package) lets the tests check the exposition format and the alert rules;
# fetched once, best effort: without it those checks are skipped and say so.
.cache/tools/promtool:
	@mkdir -p .cache/tools
	@command -v promtool >/dev/null 2>&1 && ln -sf "$$(command -v promtool)" $@ || \
	  (cd .cache/tools && apt-get download prometheus >/dev/null 2>&1 && \
	   dpkg-deb -x prometheus_*.deb pkg && ln -sf pkg/usr/bin/promtool promtool && rm -f prometheus_*.deb) || \
	  echo "note: promtool unavailable; the promtool check will be skipped"

# Debian's Chromium for the browser tests (tests/ui, Playwright drives it; Playwright's own browser
# downloads are not used). Installed once, best effort: without it those tests skip and say why.
.cache/tools/chromium:
	@mkdir -p .cache/tools
	@command -v chromium >/dev/null 2>&1 || (apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
	  echo "note: chromium unavailable; the browser tests will be skipped"
	@command -v chromium >/dev/null 2>&1 && ln -sf "$$(command -v chromium)" $@ || true

test: $(STAMP) .cache/tools/promtool .cache/tools/chromium
	$(BIN)/ruff check orchestrator executors triggers tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check orchestrator executors triggers tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .mypy_cache examples/.orch
