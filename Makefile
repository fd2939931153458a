# make demo : install (project-local .venv unless a virtual environment is active) and run the demo workflow
# make test : install with the test extras and run the whole test suite (what CI runs)
PYTHON ?= python3.11
CORES ?= $(shell nproc)
ENV_DIR := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY := $(ENV_DIR)/bin/python

.PHONY: demo test install install-test clean-results

demo: $(ENV_DIR)/.installed
	$(PY) -m snakemake --cores $(CORES) --configfile configs/demo.yaml --report results/demo/report.html --report-after-run
	@$(PY) -m wsss_common.report --experiment demo --print results/demo/metrics/seed_miou.json results/demo/metrics/mask_miou.json results/demo/metrics/val_miou.json
	@echo "report: results/demo/report.html (open it in a browser)"

test: $(ENV_DIR)/.installed-test
	$(PY) -m pytest -q

install: $(ENV_DIR)/.installed
install-test: $(ENV_DIR)/.installed-test

$(ENV_DIR)/bin/python:
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(ENV_DIR)

$(ENV_DIR)/.installed: pyproject.toml | $(ENV_DIR)/bin/python
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e .
	touch $@

$(ENV_DIR)/.installed-test: pyproject.toml | $(ENV_DIR)/bin/python
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test]"
	touch $(ENV_DIR)/.installed $@

clean-results:
	rm -rf results .snakemake
