# The two commands of the README:
#   make book   -> builds the online book into _build/html (no warnings allowed)
#   make test   -> lint, unit tests, and nbval over every chapter in _toc.yml
# Both create .venv and install requirements.txt first when needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test lint unit nbval setup clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (the book needs Python 3.11; set PYTHON=...)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W --keep-going
	@echo "Book built: _build/html/index.html"

lint: $(STAMP)
	$(BIN)/ruff check companion tests benchmarks

unit: $(STAMP)
	$(BIN)/python -m pytest tests

nbval: $(STAMP)
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with book/sanitize.cfg \
		-p no:cacheprovider $$($(BIN)/python -m companion.book notebooks)

test: lint unit nbval

clean:
	rm -rf _build
