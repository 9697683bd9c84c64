# Two entry points for the README quick start: `make demo` and `make test`.
# Both create .venv with the CPU build of torch first, so pip never pulls a CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: venv demo test bench default-model clean

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

# The bundled model (resin/data/default.*): simulated tubes (sigma 1 lateral / 5 axial,
# seed 1), the quick preset, then export. The preset stops at 9 minutes, so a much slower
# machine trains fewer steps (the log says so) and gets a different model.
default-model: venv
	mkdir -p models
	$(BIN)/resin simulate models/train_seed1.tif --truth models/train_seed1_truth.tif --seed 1 --overwrite
	$(BIN)/resin train models/train_seed1.tif -o models/default.pt --preset quick --seed 0 --overwrite
	$(BIN)/resin export models/default.pt -o resin/data/default.onnx --overwrite
	$(BIN)/python -c "from resin.checkpoint import save_generator_only as s; s('models/default.pt', 'resin/data/default.pt', overwrite=True)"

clean:
	rm -rf $(VENV) build *.egg-info demo-out
