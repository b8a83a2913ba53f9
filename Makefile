# fedhub: `make run` starts the demo, `make test` runs the whole suite.
# Each target does its own set-up and is quick when already set up.

# the system's Python, not one under a private home (pyenv in /root): user servers run
# as their own Unix accounts and must be able to execute the venv's interpreter
PYTHON ?= /usr/bin/python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fedhub-installed
PORT   ?= 8000
STATE  ?= .fedhub

.PHONY: run test test-fast lint format install traversable bench bench-flower clean browsers

$(BIN)/python:
	@test -x $(PYTHON) || { echo "$(PYTHON) not found: apt-get install python3-venv (or make PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Debian packages: pango for WeasyPrint (invoice PDFs), Chromium for the browser
# tests, PostgreSQL 15 for the test database. Installed only when missing.
APT_PACKAGES := python3-venv libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core chromium postgresql-15 poppler-utils
SYSTEM_STAMP := $(VENV)/.fedhub-system

$(SYSTEM_STAMP): | $(BIN)/python
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	touch $(SYSTEM_STAMP)

# re-install only when the dependency list changes. Every extra (the hub's tests cover
# them all), at the versions constraints.txt pins (torch)
$(STAMP): pyproject.toml setup.py constraints.txt | $(BIN)/python $(SYSTEM_STAMP)
	$(BIN)/pip install -q -c constraints.txt -e ".[all,dev]"
	@# an editable install skips data_files; put the server extension's config.d file
	@# where a wheel install would (it enables the extension in every user server)
	install -D -m 644 extensions/server/jupyter_server_config.d/fedhub.json \
	  $(VENV)/etc/jupyter/jupyter_server_config.d/fedhub.json
	install -D -m 644 extensions/server/launcher/jp_app_launcher_fedhub.yaml \
	  $(VENV)/share/jupyter/jupyter_app_launcher/jp_app_launcher_fedhub.yaml
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# user servers run as their own Unix accounts and must reach the venv: give every folder
# above the checkout the traverse bit (o+x: enter, not list) when it lacks it
traversable:
	@d="$(CURDIR)"; while [ "$$d" != "/" ]; do \
	  if [ ! -x "$$d" ] || ! stat -c %A "$$d" | grep -q '^d........[xt]'; then \
	    echo "making $$d traversable (o+x) for the user accounts"; chmod o+x "$$d"; fi; \
	  d=$$(dirname "$$d"); done

install: $(STAMP) node_modules/.package-lock.json traversable

run: install
	$(BIN)/fedhub --state-dir $(STATE) up --demo --port $(PORT)

# the code's imports against the declared dependencies (pyproject.toml [tool.deptry])
DEPTRY := $(BIN)/deptry fedhub extensions services
# the import direction (.importlinter); the wrapper tells import-linter where the
# mapped packages fedhub.extensions and fedhub.services live
LINT_IMPORTS := $(BIN)/python tools/lint_imports.py

# the suite runs on two pytest-xdist workers (this machine has two cores, and a test
# mostly waits on its hub); --dist loadscope keeps a module on one worker, so its
# module-scoped hub starts once. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider --durations=25 $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadscope)

# the whole suite, then lint and the dependency check; fails if any fails
test: install
	@status=0; \
	$(PYTEST) || status=$$?; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(DEPTRY) || status=1; \
	$(LINT_IMPORTS) || status=1; \
	exit $$status

test-fast: install
	$(PYTEST) -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(DEPTRY)
	$(LINT_IMPORTS)

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) node_modules $(STATE) build dist *.egg-info
