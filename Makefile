PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
EDGELAT ?= $(PYTHON) -m edgelat.cli

.PHONY: install demo test bench lint clean

# Installs edgelat and its pinned dependencies into the current Python (3.10+).
install:
	$(PIP) install -q -e '.[test]'

# The demo keeps its state in its own workspace, so it never touches yours.
DEMO_WS ?= .edgelat-demo

demo: install
	$(EDGELAT) device probe local --workspace $(DEMO_WS)
	$(EDGELAT) profile local --ops conv2d,dwconv2d,global_avg_pool,dense --samples 40 --unweighted --repeat 5 --min-repeat-ms 10 --workspace $(DEMO_WS)
	$(EDGELAT) train local --workspace $(DEMO_WS)
	$(EDGELAT) zoo export mobilenetv2_100 --resolution 160 --output $(DEMO_WS)/mobilenetv2_160.onnx
	$(EDGELAT) predict local $(DEMO_WS)/mobilenetv2_160.onnx --workspace $(DEMO_WS)
	$(EDGELAT) measure local $(DEMO_WS)/mobilenetv2_160.onnx --workspace $(DEMO_WS)

test: install
	$(PYTHON) -m pytest -q

bench: install
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done

lint: install
	$(PYTHON) -m ruff check edgelat tests bench

clean:
	rm -rf build *.egg-info .pytest_cache .edgelat-demo
