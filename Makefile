# Dozen: `make demo` runs the tour, `make test` the test suite; both set up .venv themselves.
# Also: `make bench` (benchmarks), `make lint` (ruff), `make spec` (regenerate isa/SPEC.md).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test bench lint spec clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m frontend.demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests

bench: $(STAMP)
	$(BIN)/dozen bench

lint: $(STAMP)
	$(BIN)/ruff check .

spec: $(STAMP)
	$(BIN)/python -m isa.spec > isa/SPEC.md.tmp && mv isa/SPEC.md.tmp isa/SPEC.md

clean:
	rm -rf $(VENV) build out .pytest_cache .hypothesis
