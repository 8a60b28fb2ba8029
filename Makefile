# Two commands for a fresh machine: `make demo` renders the demo manifests, `make test` runs the tests.
# Both install the system tools they need when missing (tools/system-packages.sh: ffmpeg, and chromium for
# the tests), create (or reuse) .venv, install torch first (the CPU build on a CPU-only Linux machine, so no
# GBs of CUDA packages), then voicebatch with its extras, at the exact versions in requirements.lock.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK ?= requirements.lock
CONSTRAINTS ?= -c $(LOCK)
EXTRAS ?= test,piper
OUT ?= outputs

# PyPI's Linux torchaudio ships CUDA-linked extensions that cannot load with a CPU torch. Higgs' audio
# tokenizer only needs torchaudio's pure-Python resample, so the extensions are dropped when they fail to load.
$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(CONSTRAINTS) torch
	$(BIN)/python -m pip install -q $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	$(BIN)/python -c "import torchaudio" 2>/dev/null || rm -f "$$($(BIN)/python -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("torchaudio").origin))')"/lib/*.so
	$(BIN)/python -c "import torchaudio.functional"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	tools/system-packages.sh ffmpeg
	$(BIN)/voicebatch render manifests/demo-dialogue.yaml manifests/demo-audiobook.yaml --out $(OUT) --no-server

test: $(BIN)/.installed
	tools/system-packages.sh ffmpeg chromium
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	tools/system-packages.sh ffmpeg
	$(BIN)/python bench/run_all.py

# Re-resolve every dependency to its newest version in a new .venv, run the suite, and write the versions it
# passed with to requirements.lock (the previous lock is kept if the suite fails).
upgrade:
	rm -rf $(VENV)
	$(MAKE) install CONSTRAINTS=
	tools/system-packages.sh ffmpeg chromium
	cp $(LOCK) $(LOCK).previous
	tools/write-lock.sh $(BIN)/python > $(LOCK)
	$(BIN)/python -m pytest -q || { mv $(LOCK).previous $(LOCK); exit 1; }
	rm -f $(LOCK).previous
	touch $(BIN)/.installed

clean:
	rm -rf $(OUT)/* build *.egg-info .pytest_cache

.PHONY: install demo test bench upgrade clean
