# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
SRC := nebo_core langchain_nebo llama_index_nebo

.PHONY: demo test lint record bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nebo demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check $(SRC) tests bench
	$(BIN)/ruff format --check $(SRC) tests bench
	$(BIN)/mypy

record: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --record-mode=rewrite -m vcr tests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
