# encore — the README's commands. Each target installs what it needs itself.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install lint clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch that lies on this disk; other versions pull CUDA builds.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# tinysoundfont's wheel declares pyaudio (for live playback, unused here, and it
	# needs portaudio headers to build): install the renderer without it.
	$(PY) -m pip install --quiet --no-deps 'tinysoundfont==0.3.7'
	touch $(STAMP)

install: $(STAMP)

## Start the platform on embedded defaults with the shipped base model.
run: $(STAMP)
	$(VENV)/bin/encore serve

## Run the whole test suite (SQLite and PostgreSQL, Huey immediate and a real consumer, Chromium).
test: $(STAMP)
	./scripts/ensure-system-deps
	$(PY) -m pytest -q

## ruff over src and tests; mypy over the packages in pyproject.toml's [tool.mypy] (tests/test_lint.py runs both).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV)
