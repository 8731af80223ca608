# The set-up and daily commands. Every target creates .venv itself when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit integration lint protos bench up down clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[server,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/anneal --home .anneal demo

test: $(STAMP)
	$(BIN)/ruff check anneal cluster trainers tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -q tests

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

lint: $(STAMP)
	$(BIN)/ruff check anneal cluster trainers tests
	$(BIN)/ruff format --check anneal cluster trainers tests
	$(BIN)/mypy

protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/anneal/v1/*.proto

bench: $(STAMP)
	$(BIN)/python -m benchmarks

up: $(STAMP)
	$(BIN)/anneal up

down: $(STAMP)
	$(BIN)/anneal down

clean:
	rm -rf $(VENV) .anneal
