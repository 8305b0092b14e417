# Two commands a newcomer needs (see README):
#   make demo   install the runtime and recognise the bundled samples with the bundled model
#   make test   install everything (runtime, training, export, dev), lint, type-check and run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP_RUNTIME = $(VENV)/.htr-runtime
STAMP_ALL     = $(VENV)/.htr-all

.PHONY: demo test lint bench install install-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

$(STAMP_RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[cpu]"
	touch $@

$(STAMP_ALL): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[cpu,train,export,dev]"
	touch $@ $(STAMP_RUNTIME)

install: $(STAMP_RUNTIME)
install-all: $(STAMP_ALL)

# WORD_MODEL / LINE_MODEL: a bundled name or an .onnx file (default: the bundled models).
WORD_MODEL ?= word
LINE_MODEL ?= line
demo: $(STAMP_RUNTIME)
	$(BIN)/htr-run samples/words samples/digits --recursive --format tsv --model $(WORD_MODEL)
	$(BIN)/htr-run samples/lines --recursive --format tsv --model $(LINE_MODEL)
	$(BIN)/htr-eval samples/words --model $(WORD_MODEL)
	$(BIN)/htr-eval samples/digits --model $(WORD_MODEL)
	$(BIN)/htr-eval samples/lines --model $(LINE_MODEL)
	$(BIN)/htr-eval samples/words --model $(WORD_MODEL) --decoder beam --lm words
	$(BIN)/htr-eval samples/lines --model $(LINE_MODEL) --decoder beam --lm lines

# The linter and the type checker (configured in pyproject.toml), then the tests.
lint: $(STAMP_ALL)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# make bench [QUICK=1] [BENCH_ARGS="--keras lean=/tmp/train/word/model.keras"]: decoder and runtime
# benchmarks; reports land in benchmarks/reports/ (full run about 25 min on 2 cores, QUICK=1 a few).
bench: $(STAMP_ALL)
	$(BIN)/pip install -q -r benchmarks/requirements.txt && $(BIN)/pip install -q --no-deps "pyctcdecode==0.5.0"
	$(BIN)/python benchmarks/bench_decoders.py
	$(BIN)/python benchmarks/bench_runtime.py $(if $(QUICK),--quick) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
