# axrepro: one-command reproduction and tests. Every target creates or reuses .venv by itself.
#   make reproduce            recompute every raw run (PROFILE=default), build the book, store its pages (data/pages)
#   make test                 lint + unit tests + smoke-run every notebook + build the book
#   make book                 build the book from the stored runs and pages (executes only pages that changed)
#   make notebook NB=moons2016/fig02 P="bits=[4,6,8]"   re-execute one notebook with overrides
#   make clean                remove build output and caches (not the committed raw runs)
# Knobs: PROFILE=smoke|default|paper, AXLIB_DATA=<datasets/weights>, DEVICE=cpu|cuda|auto.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= default
export PROFILE

.PHONY: reproduce book notebook test lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

reproduce: $(STAMP)
	AXLIB_FORCE=1 AXLIB_RETRAIN=1 $(PY) -m axlib.repro book --profile $(PROFILE) --all
	@if [ "$(PROFILE)" = default ]; then $(PY) -m axlib.repro store-pages; fi
	@echo "book: _build/html/index.html"

book: $(STAMP)
	$(PY) -m axlib.repro book --profile $(PROFILE)
	@echo "book: _build/html/index.html"

notebook: $(STAMP)
	@test -n "$(NB)" || { echo 'usage: make notebook NB=<paper>/<id> [P="name=value ..."]'; exit 2; }
	$(PY) -m axlib.repro run --nb "$(NB)" --set '$(P)' --profile $(PROFILE) --book

lint: $(STAMP)
	$(VENV)/bin/ruff check axlib tests benchmarks

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

clean:
	rm -rf _build .jb data/cache .pytest_cache .ruff_cache
