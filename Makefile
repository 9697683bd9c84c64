# Two entry points for the README quick start: `make demo` and `make test`.
# Both create .venv with the CPU build of torch first, so pip never pulls a CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: venv demo test bench quality default-model clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=77" wheel
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
default-model: venv models/train_seed1.tif
	$(BIN)/resin train models/train_seed1.tif -o models/default.pt --preset quick --seed 0 --overwrite
	$(BIN)/resin export models/default.pt -o resin/data/default.onnx --overwrite
	$(BIN)/python -c "from resin.checkpoint import save_generator_only as s; s('models/default.pt', 'resin/data/default.pt', overwrite=True)"

# The README's quality table (bench/quality.py): the bundled quick model, a longer run
# (bench/configs/longer.json: F [16, 32, 64], 3600 steps, ~65 min on 2 CPU cores) and a
# quick model for a PSF tilted 45 degrees, each trained on its own simulated volume (seed 1;
# simulation is deterministic, so an existing file is the same volume) and scored on
# another (seed 0).
models/train_seed1.tif: | venv
	mkdir -p models
	$(BIN)/resin simulate $@ --truth models/train_seed1_truth.tif --seed 1 --overwrite

models/train45_seed1.tif: | venv
	mkdir -p models
	$(BIN)/resin simulate $@ --truth models/train45_seed1_truth.tif --seed 1 --angle 45 --overwrite

models/longer.pt: models/train_seed1.tif bench/configs/longer.json | venv
	$(BIN)/resin train $< -o $@ --preset quick --config bench/configs/longer.json --seed 0 --overwrite

models/oblique45.pt: models/train45_seed1.tif | venv
	$(BIN)/resin train $< -o $@ --preset quick --angle 45 --seed 0 --overwrite --no-previews

quality: venv models/longer.pt models/oblique45.pt
	mkdir -p bench/results
	$(BIN)/python bench/quality.py --quick-model resin/data/default.pt \
		--longer-model models/longer.pt \
		--extra-model "RESIN trained longer, last step=models/longer.last.pt" \
		--oblique --oblique-model models/oblique45.pt --json bench/results/quality.json

clean:
	rm -rf $(VENV) build *.egg-info demo-out
