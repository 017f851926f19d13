# Every target is self-sufficient on a fresh machine: it creates the venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first, so pip never resolves a bare `torch` to a multi-GB CUDA wheel.
# Override e.g. TORCH_VERSION=2.14.1 or TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
# two test processes (pytest-xdist); a module's tests stay in one (its module fixtures are built once)
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: setup demo test lint bench bench-studies gpu-check ui clean

setup: $(VENV)/.installed

# torch first, with pip (it finds a local CPU wheel, or TORCH_INDEX); the rest with uv, which keeps
# that torch and installs in seconds where pip takes a minute or more; pip again if uv fails.
# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (CI), no process writes .pyc files, and
# without them every lmbench process the tests start compiles torch and MLflow from source
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q uv && $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e ".[dev]" \
	  || $(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: setup  ## the main job: a fair comparison on the embedded synthetic corpus
	$(BIN)/lmbench compare --models rnn,lstm,gru,transformer

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

bench: setup  ## the benchmarks in one run (<= 25 min on 2 idle cores); writes benchmarks/results/latest.* and the README table
	$(BIN)/python benchmarks/run.py --tier bench
	$(BIN)/python benchmarks/readme_table.py

bench-studies: setup  ## the three study-sized runs (each judged against its own time target); writes benchmarks/results/studies.* and the README section
	$(BIN)/python benchmarks/run.py --tier studies
	$(BIN)/python benchmarks/readme_table.py

gpu-check: setup  ## CUDA paths on one GPU (bf16+compile GPT and its MFU, cuDNN LSTM, compare, KV cache)
	$(BIN)/python benchmarks/gpu_check.py

ui: setup  ## browse runs in the MLflow UI, bound to loopback (lmbench ui --help for --port/--host)
	$(BIN)/lmbench ui

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
