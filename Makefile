# Two commands for a fresh machine: `make demo` renders the demo manifests, `make test` runs the tests.
# Both create (or reuse) .venv, install torch first (the CPU build on a CPU-only Linux machine, so no GBs of
# CUDA packages), then voicebatch with its extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
EXTRAS ?= test,piper
OUT ?= outputs

# PyPI's Linux torchaudio ships CUDA-linked extensions that cannot load with a CPU torch. Higgs' audio
# tokenizer only needs torchaudio's pure-Python resample, so the extensions are dropped when they fail to load.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -c "import torchaudio" 2>/dev/null || rm -f "$$($(BIN)/python -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("torchaudio").origin))')"/lib/*.so
	$(BIN)/python -c "import torchaudio.functional"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/voicebatch render manifests/demo-dialogue.yaml manifests/demo-audiobook.yaml --out $(OUT)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(OUT)/* build *.egg-info .pytest_cache

.PHONY: install demo test bench clean
