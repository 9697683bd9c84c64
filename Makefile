# Two entry points for the README quick start: `make demo` and `make test`.
# Both create .venv with the CPU build of torch first, so pip never pulls a CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: venv demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=69" wheel
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[train,export,dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/resin demo --out demo-out

test: venv
	$(BIN)/ruff check .
	$(BIN)/mypy resin export runtime kernels
	$(BIN)/python -m pytest -q
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -m cudasim tests/kernels

bench: venv
	$(BIN)/python bench/kernels.py
	$(BIN)/python bench/runtime.py

clean:
	rm -rf $(VENV) build *.egg-info demo-out
