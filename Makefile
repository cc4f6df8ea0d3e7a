# Everything runs in a virtual environment of its own (.venv), made on first use: a Debian system
# Python refuses `pip install`, and a shared one is not ours to change. PYTHON=... uses another
# interpreter or environment instead (then nothing is created).
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
PIP ?= $(PYTHON) -m pip
EDGELAT ?= $(PYTHON) -m edgelat.cli
# Where torch's CPU-only build comes from when no local wheel is found: PyPI's plain `torch` is the
# multi-GB CUDA build (https://pytorch.org/get-started/locally/, Linux, pip, CPU).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test bench lint clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# Installs edgelat and its pinned dependencies (Python 3.10 or newer, as setup.cfg says; tested with 3.11): torch's CPU build first, from a
# local wheel if pip finds one (find-links; its dependencies from the package index), else from PyTorch's CPU index.
install: $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(VENV)/bin/python)
	($(PIP) install -q --no-index --no-deps torch==2.13.0 2>/dev/null && $(PIP) install -q torch==2.13.0) || $(PIP) install -q torch==2.13.0 --index-url $(TORCH_INDEX)
	$(PIP) install -q -e '.[test]'

# The demo keeps its state in its own workspace, so it never touches yours.
DEMO_WS ?= .edgelat-demo

demo: install
	$(EDGELAT) device probe local --workspace $(DEMO_WS)
	$(EDGELAT) profile local --ops conv2d,dwconv2d,global_avg_pool,dense --samples 40 --repeat 5 --min-repeat-ms 10 --workspace $(DEMO_WS)
	$(EDGELAT) train local --workspace $(DEMO_WS)
	$(EDGELAT) zoo export mobilenetv2_100 --resolution 160 --output $(DEMO_WS)/mobilenetv2_160.onnx
	$(EDGELAT) predict local $(DEMO_WS)/mobilenetv2_160.onnx --workspace $(DEMO_WS)
	$(EDGELAT) measure local $(DEMO_WS)/mobilenetv2_160.onnx --workspace $(DEMO_WS)
	$(PYTHON) -m edgelat.demo $(DEMO_WS)

# Tests that time kernels and check what they measured (marked timed) run one at a time: a timing beside
# a build is noise. The rest (import and pricing of the network corpus, a Dask cluster, campaigns whose
# times nothing checks) run first on both cores, beside the emulated aarch64 device's root file system
# if .ci/run is building it; the timed ones wait for that build to end; the aarch64 tests come last, on
# both cores (xdist's loadgroup does not group under pytest 9: each worker starts its own device).
test: install
	$(PYTHON) -m pytest -q -m "not timed and not aarch64" -n 2 --durations=15
	$(PYTHON) scripts/emulated_device.py wait
	$(PYTHON) -m pytest -q -m timed --durations=15
	$(PYTHON) -m pytest -q -m aarch64 -n 2 --durations=15

# Benchmarks that run on a workspace you have prepared (a tuned profile, a validation run) say how in their
# docstring's Usage line and are left out here.
BENCH_WITH_WORKSPACE = cache_states caches_models tuned_in_place tuned_vs_ort sampler_coverage schedule_quality

bench: install
	@for b in bench/[!_]*.py; do \
	  case " $(BENCH_WITH_WORKSPACE) " in *" $$(basename $$b .py) "*) echo "== $$b: needs --workspace (see its Usage), skipped"; continue;; esac; \
	  echo "== $$b"; $(PYTHON) $$b || exit 1; done

lint: install
	$(PYTHON) -m ruff check edgelat tests bench scripts
	$(PYTHON) -m mypy edgelat

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .edgelat-demo
