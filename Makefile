# The two commands of the README:
#   make book   -> builds the online book into _build/html and its Chinese edition into
#                  _build/html/zh (no warnings allowed in either)
#   make test   -> lint, unit tests, and nbval over every chapter in _toc.yml
# Both create .venv and install requirements.txt first when needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book catalogs test lint unit nbval setup clean browser check-site test-colab

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (the book needs Python 3.11; set PYTHON=...)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W --keep-going
	$(BIN)/python tools/i18n.py build
	@echo "Book built: _build/html/index.html, and in Chinese _build/html/zh/index.html"

# After editing a page: bring the message catalogs locales/zh_CN/LC_MESSAGES/<page>.po up to
# date with the sources (new messages untranslated, changed ones fuzzy); then translate them.
catalogs: $(STAMP)
	$(BIN)/python tools/i18n.py catalogs

lint: $(STAMP)
	$(BIN)/ruff check companion tests benchmarks site_tests tools _ext
	$(BIN)/actionlint .github/workflows/ci.yml .github/workflows/pages.yml

unit: $(STAMP)
	$(BIN)/python -m pytest tests

nbval: $(STAMP)
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with book/sanitize.cfg \
		-p no:cacheprovider $$($(BIN)/python -m companion.book notebooks)

test: lint unit nbval

# The Colab twin: Colab's versions of the book's packages (requirements-colab.txt, with Colab's
# pip) in .venv-colab, nbval added without changing them; then the companion package installed
# the way every chapter's setup cell installs it (from this working tree instead of the release
# tag), failing if pip changed any of Colab's packages; the package resolved for Python 3.13 (a
# dry run); the widget tests under Colab's ipywidgets 7; three chapters under nbval (without
# myst-nb, as in Colab: its glue records are left out of the comparison, tools/nbval_colab.py).
COLAB_VENV  := .venv-colab
COLAB_BIN   := $(COLAB_VENV)/bin
COLAB_STAMP := $(COLAB_VENV)/.installed
COLAB_CHAPTERS := book/getting_started.ipynb book/finetuning_math.ipynb book/walkthrough.ipynb

$(COLAB_STAMP): requirements-colab.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (the Colab twin needs Python 3.11; set PYTHON=...)" >&2; exit 1; }
	rm -rf $(COLAB_VENV)
	$(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_BIN)/python -m pip install --quiet "$$(grep '^pip==' requirements-colab.txt)"
	$(COLAB_BIN)/python -m pip install --quiet -r requirements-colab.txt
	$(COLAB_BIN)/python -m pip install --quiet nbval==0.11.0 -c requirements-colab.txt
	$(COLAB_BIN)/python tools/colab_twin.py snapshot
	touch $(COLAB_STAMP)

test-colab: $(COLAB_STAMP)
	$(COLAB_BIN)/python tools/colab_twin.py install || { rm -f $(COLAB_STAMP); exit 1; }  # rebuilt next time
	$(COLAB_BIN)/python tools/colab_twin.py resolve
	$(COLAB_BIN)/python -m pytest -q -p no:cacheprovider tests/test_plots_widgets.py
	$(COLAB_BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with book/sanitize.cfg \
		-p no:cacheprovider -p tools.nbval_colab $(COLAB_CHAPTERS)

# The built site in headless Chromium (run after `make book`): pages, images, console, math,
# links, Colab buttons, page weight, in both editions. `browser` installs Debian's chromium and
# chromedriver, and a CJK font for the Chinese pages (fonts-noto-cjk), when missing (needs root)
# and fetches, with npm, local copies of the CDN scripts the pages load.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { apt-get update && apt-get install -y chromium chromium-driver; }
	@fc-list :lang=zh 2>/dev/null | grep -q . || { apt-get update && apt-get install -y fonts-noto-cjk; }
	$(BIN)/python site_tests/cdn.py

check-site: $(STAMP) browser
	$(BIN)/python -m pytest site_tests -q

clean:
	rm -rf _build
