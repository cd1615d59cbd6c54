# pitstop's two entry points for a fresh machine (see README):
#   make demo   — install everything, start the embedded stack (Temporal + Web UI + local fleet sandbox + worker + webhook)
#   make test   — install everything and run the whole test suite against real components
# Everything else here is a step of those two.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
APT_PACKAGES := prometheus prometheus-alertmanager chromium postgresql

.PHONY: demo test venv system-deps k8s-binaries temporal-binaries lint typecheck unit clean-state

demo: venv system-deps k8s-binaries
	$(VENV)/bin/pitstop up --demo

test: venv system-deps k8s-binaries temporal-binaries lint typecheck
	bash scripts/run-tests.sh

venv: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

# Debian packages: Prometheus + Alertmanager + PostgreSQL (started as our own processes), Chromium (Web UI browser test).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@command -v go >/dev/null || { echo "Go is required to build the sandbox's Kubernetes binaries (https://go.dev/dl)"; exit 1; }

# kube-apiserver, controller-manager, scheduler, etcd, kwok: built from Go modules into ~/.cache/pitstop (not the repo).
k8s-binaries: venv
	$(PY) -m pitstop.sandbox.binaries build

# The real Temporal server + its SQL schema tool (production-topology tests), built from Go modules into the same cache.
temporal-binaries: venv
	$(PY) -m pitstop.sandbox.temporal_binaries

# import layering (import-linter) + sizes: no workflow class over 250 lines, no function over 60 (scripts/check_sizes.py)
lint: venv
	$(VENV)/bin/lint-imports
	$(PY) scripts/check_sizes.py --strict

# mypy with the pydantic plugin over pitstop, workflows, activities, workers, sandbox, bench ([tool.mypy] files).
typecheck: venv
	$(PY) -m mypy

unit: venv
	$(VENV)/bin/pytest tests/unit -q

clean-state:
	rm -rf $${PITSTOP_STATE_DIR:-$$HOME/.local/state/pitstop}
