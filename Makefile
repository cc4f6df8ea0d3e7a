PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
EDGELAT ?= $(PYTHON) -m edgelat.cli

.PHONY: install demo test bench lint clean

# Installs edgelat and its pinned dependencies into the current Python (3.10+).
install:
	$(PIP) install -q -e '.[test]'

demo: install
	$(EDGELAT) device probe local

test: install
	$(PYTHON) -m pytest -q

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done

lint: install
	$(PYTHON) -m ruff check edgelat tests bench

clean:
	rm -rf build *.egg-info .pytest_cache
