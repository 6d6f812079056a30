# Quickstart: `make demo` and `make test`. Both create .venv/ when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-peer clean chromium judgement-model

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of torch first (lies on local disk); a plain `torch` would pull a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,ray]'
	# Loaders the export tests read with, whose own requirements would replace the CPU torch
	# (torchvision): installed without them; the test extra lists what they need.
	$(BIN)/python -m pip install -q --no-deps open-clip-torch==3.3.0 mosaicml-streaming==0.13.0 litdata==0.2.76
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/curate demo --out demo-out

test: $(STAMP) chromium
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --durations=20

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_score.py

# the same captions through datatrove too (its own venv in bench-out/peer-venv, made once)
bench-peer: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_score.py --peer

# Headless Chromium renders the HTML report in the tests (Debian's package; needs root).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "could not install chromium: the report rendering test will fail under CI"

clean:
	rm -rf demo-out .pytest_cache

# The judgement filter's model (curate/scoring/filters/models/judgement.*), rebuilt byte for
# byte from the labels (benchmarks/train_judgement.py); `--check` compares without writing.
judgement-model: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/train_judgement.py
