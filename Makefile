# Two entry points for the README quick start: `make demo` and `make test`.
# Both create .venv with the CPU build of torch first, so pip never pulls a CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: venv demo test bench quality quality-long quality-long-nuclei default-model clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=77" wheel
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[cpu,train,export,napari,dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/resin demo --out demo-out --overwrite

test: venv
	$(BIN)/ruff check .
	$(BIN)/mypy resin export runtime kernels
	$(BIN)/python -m pytest -q
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -m cudasim tests/kernels tests/runtime/test_device_blend.py

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

# The training volume of the bundled model: simulated tubes, seed 1 (simulation is
# deterministic, so an existing file is the same volume).
models/train_seed1.tif: | venv
	mkdir -p models
	$(BIN)/resin simulate $@ --truth models/train_seed1_truth.tif --seed 1 --overwrite

# The README's quality tables (bench/quality.py): four simulated settings (paper, noisy,
# oblique45, nuclei; seed 0), each with a quick RESIN model and (but for oblique45) a Self-Net
# baseline trained here on its own raw volume; about 45-60 min on 2 CPU cores.
quality: venv
	mkdir -p bench/results
	$(BIN)/python bench/quality.py --json bench/results/quality.json

# The longer CPU run: the `long` preset (the quick recipe, 30-minute cap) beside quick,
# Self-Net and the other rows, in the two settings of the paper's Table 1 (paper, noisy);
# about 80 min on 2 CPU cores (78 min measured).
quality-long: venv
	mkdir -p bench/results
	$(BIN)/python bench/quality.py --settings paper noisy --long paper noisy --json bench/results/quality_long.json

# The long preset on the dense nuclei (the realistic simulation), beside quick and
# Self-Net; about 45 min on 2 CPU cores.
quality-long-nuclei: venv
	mkdir -p bench/results
	$(BIN)/python bench/quality.py --settings nuclei --long nuclei --json bench/results/quality_long_nuclei.json

clean:
	rm -rf $(VENV) build *.egg-info demo-out
