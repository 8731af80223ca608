# The set-up and daily commands. Every target creates .venv itself when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# buf checks the wire contract (protos/buf.yaml); it comes from npm, pinned, into an ignored folder.
BUF_VERSION := 1.75.0
TOOLS := .tools
BUF := $(CURDIR)/$(TOOLS)/node_modules/.bin/buf
BUF_STAMP := $(TOOLS)/.buf-$(BUF_VERSION)
# The wire as it stood when it was last accepted: `buf breaking` compares against it.
WIRE_BASELINE := wire-baseline.json

.PHONY: demo test unit integration lint wire wire-baseline protos bench up down clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[server,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/anneal --home .anneal demo

$(BUF_STAMP):
	@command -v npm >/dev/null 2>&1 || { \
		echo "make: buf, which checks protos/, installs from npm, and npm is missing:" \
		     "install Node.js 18 or newer with npm (e.g. apt-get install nodejs npm), then run make again" >&2; \
		exit 1; }
	npm install --prefix $(TOOLS) --no-audit --no-fund --no-save --silent @bufbuild/buf@$(BUF_VERSION)
	@touch $(BUF_STAMP)

test: $(STAMP) wire
	$(BIN)/ruff check anneal cluster trainers tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -q --durations=20 tests

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

lint: $(STAMP) wire
	$(BIN)/ruff check anneal cluster trainers tests
	$(BIN)/ruff format --check anneal cluster trainers tests
	$(BIN)/mypy

# buf lint (STANDARD, less the rules buf.yaml lists with why) and buf breaking against the baseline.
wire: $(BUF_STAMP)
	cd protos && $(BUF) lint
	cd protos && $(BUF) breaking --against $(WIRE_BASELINE)

# Accepts the wire as it is now as the baseline of `buf breaking`: run it when a change to the wire lands.
wire-baseline: $(BUF_STAMP)
	cd protos && $(BUF) build -o $(WIRE_BASELINE)

protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/anneal/v1/*.proto

bench: $(STAMP)
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.data_parallel
	$(BIN)/python -m benchmarks.streaming
	$(BIN)/python -m benchmarks.search

# The built-in trainers through the trainer contract on the CPU and, where torch has CUDA, on
# the GPU (and NCCL at world size 1), and GPU-trained weights served on the CPU; no Ray.
# GPU_CHECK_ARGS passes flags (--quick, --epochs N): see benchmarks/gpu_check.py --help.
.PHONY: gpu-check
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

up: $(STAMP)
	$(BIN)/anneal up

down: $(STAMP)
	$(BIN)/anneal down

clean:
	rm -rf $(VENV) .anneal $(TOOLS)
