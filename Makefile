# Set-up of a fresh machine: `make demo` and `make test` each create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; on a GPU box install your CUDA build of torch first (see README).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[train,image,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/godminer demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/offer_latency.py
	$(PY) bench/lifecycle_day.py
	$(PY) bench/policies.py
	$(PY) bench/dashboard_api.py
	$(PY) bench/training_quality.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
