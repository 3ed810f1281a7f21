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

# pytest exits 5 when it collected no tests, a failure; make would report it only as status 2.
test: install-dev
	@status=0; $(BIN)/python -m pytest -q || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$status

bench: install-dev
	$(BIN)/vidact bench
