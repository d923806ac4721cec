# Two commands: `make demo` (set up, then run the main study on the bundled datasets)
# and `make test` (set up, then run the test suite). `make setup` alone is idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup demo test test-fast clean

setup: $(STAMP)

# torch first: the CPU wheel where no GPU answers (a plain `torch` requirement would pull a multi-GB
# CUDA build), PyPI's CUDA build where one does. pyproject's `torch>=2.4` is then already satisfied.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if nvidia-smi -L >/dev/null 2>&1; then \
		$(PY) -m pip install -q "torch==2.13.0"; \
	else \
		$(PY) -m pip install -q "torch==2.13.0+cpu" 2>/dev/null || \
		$(PY) -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(PY) tune/run_ablation.py --space aug_weight

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
