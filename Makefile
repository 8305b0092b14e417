# Two commands a newcomer needs (see README):
#   make demo   install the runtime and recognise the bundled samples with the bundled model
#   make test   install everything (runtime, training, export, dev) and run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP_RUNTIME = $(VENV)/.htr-runtime
STAMP_ALL     = $(VENV)/.htr-all

.PHONY: demo test bench install install-all clean

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

# MODEL: a bundled name or an .onnx file; default: the bundled word model (issue 7, pending).
MODEL ?=
MODEL_ARG = $(if $(MODEL),--model $(MODEL),)
demo: $(STAMP_RUNTIME)
	$(BIN)/htr-run samples/ --recursive --format tsv $(MODEL_ARG)
	$(BIN)/htr-eval samples/words $(MODEL_ARG)
	$(BIN)/htr-eval samples/digits $(MODEL_ARG)

test: $(STAMP_ALL)
	$(BIN)/python -m pytest -q

# make bench [QUICK=1] [BENCH_ARGS="--keras lean=/tmp/train/word/model.keras"]: decoder and runtime
# benchmarks; reports land in benchmarks/reports/ (full run about 25 min on 2 cores, QUICK=1 a few).
bench: $(STAMP_ALL)
	$(BIN)/pip install -q -r benchmarks/requirements.txt && $(BIN)/pip install -q --no-deps "pyctcdecode==0.5.0"
	$(BIN)/python benchmarks/bench_decoders.py
	$(BIN)/python benchmarks/bench_runtime.py $(if $(QUICK),--quick) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
