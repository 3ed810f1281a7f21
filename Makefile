# Two entry points, both complete on a fresh machine (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VIDEO ?= ../shared/data/videos/mmaction2_test_video_structuralize.mp4

.PHONY: install install-dev demo test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install "torch>=2.4" torchvision
	$(BIN)/pip install -e ".[detect,gpu]"

install-dev: $(BIN)/python
	$(BIN)/pip install "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install "torch>=2.4" torchvision
	$(BIN)/pip install -e ".[dev]"

demo: install
	$(BIN)/vidact detect $(VIDEO) --out vidact_out

test: install-dev
	$(BIN)/python -m pytest -q

bench: install-dev
	$(BIN)/vidact bench
