# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
SRC := nebo_core langchain_nebo llama_index_nebo nebo_emulator nebo_demo nebo_cli llama_index

.PHONY: demo test test-core test-sdk2 soak lint record bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nebo demo

test: test-core test-sdk2

test-core: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The openai SDK 2.x (on httpx) in its own venv; the main venv carries 3.x (on httpx2).
SDK2 := .venv-sdk2
$(SDK2)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SDK2)
	$(SDK2)/bin/python -m pip install -q --upgrade pip
	$(SDK2)/bin/python -m pip install -q -e . 'openai>=2,<3' pytest pytest-asyncio pytest-timeout
	touch $@

test-sdk2: $(SDK2)/.installed
	$(SDK2)/bin/python -m pytest -q -p no:cacheprovider tests/nebo_core/test_openai_compat.py tests/nebo_core/test_paths.py

# The chaos fleets of tests/nebo_core/test_chaos.py at soak size (NEBO_CHAOS_CALLS calls per fleet:
# over 10,000 billed calls per store); `make test` runs them at 3,200. Then the pacing and
# degradation figures on the issue's 60-second session window (`make test`: 20 s for pacing, 15 s for degradation).
NEBO_CHAOS_CALLS ?= 17600
soak: $(STAMP)
	NEBO_CHAOS_CALLS=$(NEBO_CHAOS_CALLS) $(BIN)/python -m pytest -q -p no:cacheprovider -m soak --timeout 1800 -rA tests/nebo_core/test_chaos.py
	NEBO_PACE_WINDOW_S=60 $(BIN)/python -m pytest -q -p no:cacheprovider --timeout 600 -rA -k done_when \
		tests/nebo_core/test_pacing.py tests/nebo_core/test_degrade.py

lint: $(STAMP)
	$(BIN)/ruff check $(SRC) tests bench
	$(BIN)/ruff format --check $(SRC) tests bench
	$(BIN)/mypy

# Benchmarks against the anchors (langchain-openai, llama-index's OpenAI-like classes), in their own venv:
# the anchors are never dependencies of this project.
BENCH_VENV ?= bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e '.[all]' -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m bench.run

record: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --record-mode=rewrite -m vcr tests

clean:
	rm -rf $(VENV) $(SDK2) $(BENCH_VENV) .mypy_cache .ruff_cache .pytest_cache
