# Two commands do all set-up on a fresh machine: `make test` and `make book`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EPOCHS ?= 30
OUT    ?= runs/compare

.PHONY: install test book compare clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

install: $(STAMP)

## Run every test: the package, the command line, the notebooks (nbval, quick mode) and the book build.
test: $(STAMP)
	$(BIN)/python -m pytest -v -n auto --dist loadfile

## Build the rendered course into _build/html: one build per language (pt/, es/) and a landing page (index.html).
book: $(STAMP)
	$(BIN)/python book/build_site.py --output _build

## Train vit-tiny and cvt-tiny under one budget; data from $$CVT_EDU_DATA (or a CIFAR-10 download).
compare: $(STAMP)
	$(BIN)/python -m cvt_edu compare --models vit-tiny cvt-tiny --epochs $(EPOCHS) --out $(OUT)

clean:
	rm -rf _build runs
