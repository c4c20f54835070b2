# Two commands for a new user: `make demo` and `make test`. Everything installs into .venv against constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Ray job entrypoints and `ray` itself resolve through PATH: put the venv first, as activating it would.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
STAMP := $(VENV)/.installed

.PHONY: install s3server kserve-client demo demo-down test test-fast lint bench lock clean

install: $(STAMP)

# Re-running is a no-op unless pyproject.toml or constraints.txt changed.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" 
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# The S3 test server (moto standalone) has its own virtualenv: moto needs python-dateutil<3, the project pins 4.0.0.
S3_VENV := .venv-s3server
s3server: $(S3_VENV)/.installed

$(S3_VENV)/.installed: tests/s3server-requirements.txt
	@test -x $(S3_VENV)/bin/python || $(PYTHON) -m venv $(S3_VENV)
	$(S3_VENV)/bin/python -m pip install --quiet -r tests/s3server-requirements.txt
	@touch $(S3_VENV)/.installed

# KServe's REST client (the V2 protocol tests) has its own virtualenv too: every kserve release conflicts with the
# project's pins (python-dateutil, protobuf, starlette, httpx, fastapi; tests/kserve-client-requirements.txt says which).
KSERVE_VENV := .venv-kserve
kserve-client: $(KSERVE_VENV)/.installed

$(KSERVE_VENV)/.installed: tests/kserve-client-requirements.txt
	@test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet -r tests/kserve-client-requirements.txt
	@touch $(KSERVE_VENV)/.installed

demo: install
	$(PY) -m mlplatform.demo

demo-down: install
	$(PY) -m mlplatform.demo --down

# The whole suite runs as two pytest processes side by side (tests/run_suite.py); PYTEST_ARGS runs just those.
test: install s3server kserve-client lint
ifeq ($(strip $(PYTEST_ARGS)),)
	$(PY) tests/run_suite.py
else
	$(PY) -m pytest $(PYTEST_ARGS)
endif

# Style, types and the package's layers (contract in pyproject.toml); `make test` runs it first.
lint: install
	$(VENV)/bin/ruff check platform tests benchmarks train_jobs serve_apps
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Every benchmark runs even when an earlier one misses its target; the exit status says whether all met theirs.
bench: install
	@command -v wrk >/dev/null 2>&1 || { echo "bench: installing wrk (the serving benchmarks' load generator)"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo"; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	@status=0; for script in benchmarks/[a-z]*.py; do echo "== $$script"; $(PY) $$script || status=1; done; exit $$status

# Regenerate the exact pins from a throwaway venv.
lock:
	rm -rf /tmp/mlplatform-lock && $(PYTHON) -m venv /tmp/mlplatform-lock
	/tmp/mlplatform-lock/bin/pip install --quiet -e ".[dev]"
	/tmp/mlplatform-lock/bin/pip freeze --exclude-editable | grep -v '^torch==' > constraints.txt.new
	printf '# Exact pins (pip install -c constraints.txt); regenerate with make lock.\ntorch==2.13.0\n' | cat - constraints.txt.new > constraints.txt && rm constraints.txt.new

clean:
	rm -rf $(VENV) $(S3_VENV) $(KSERVE_VENV) .mlplatform .pytest_cache .ruff_cache
