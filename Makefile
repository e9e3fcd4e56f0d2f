# The two commands a newcomer needs: `make book` and `make test` (see README.md).
# Both create .venv on first use; re-installing is skipped while the dependency
# files are unchanged (the stamp file is keyed by their hash).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= ci
SEED ?= 0
# Several seeds for every chapter, mean ± std over them, e.g. SEEDS="0 1 2" (default: the profile's seeds)
SEEDS ?=
# A data source as --data takes it (default: each chapter's own; synthetic for make bench), and config
# overrides as --set takes them, separated by spaces: SET="student=student_micro data.informative_fraction=0.2"
DATA ?=
SET ?=
DEPS_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(DEPS_HASH)
EXECUTED := _build/executed
# Chapters in reading order; each is book/<name>.md, executed to $(EXECUTED)/book/<name>.ipynb.
CHAPTERS := $(shell $(PYTHON) -c "import re; print(' '.join(re.findall(r'(?:root|file):\s*book/(\S+)', open('_toc.yml').read())))")
# The executed notebooks of those chapters (pages without code, like the references, have none).
NOTEBOOKS = $(wildcard $(addprefix $(EXECUTED)/book/,$(addsuffix .ipynb,$(CHAPTERS))))

.PHONY: help install book execute html browser chapter test unit nbval bench publish clean clean-artifacts

help:
	@echo "make book     execute every chapter (PROFILE=$(PROFILE)) and build _build/html"
	@echo "make test     unit tests, chapter execution, nbval re-execution check, book build, browser check"
	@echo "make browser  open every page of _build/html in headless chromium (math, images, no network)"
	@echo "make chapter CH=<name> [SEED=1] [SEEDS=\"0 1 2\"] [DATA=<source>] [SET=\"key=value ...\"] [PARAMS=\"-p knob value\"]"
	@echo "             rerun one chapter with papermill (README: Rerun one chapter on other settings)"
	@echo "make bench    python -m cdlib bench [DATA=<source>] [SET=...] (writes results.json)"
	@echo "make publish  push _build/html to the gh-pages branch (ghp-import)"

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and on its own: pip takes these two pinned releases from the machine's disk.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	rm -f $(VENV)/.installed-*
	touch $@

# Execute every chapter with papermill (artifacts are trained on first use, then reused).
execute: install
	$(PY) -m cdlib book execute --profile $(PROFILE) --seed $(SEED) $(if $(SEEDS),--seeds $(SEEDS)) --out $(EXECUTED) $(CHAPTERS)

# Build the HTML book from the executed notebooks, without re-executing them; warnings fail.
html: install
	$(PY) -m cdlib book stage --executed $(EXECUTED)
	$(VENV)/bin/jupyter-book build $(EXECUTED) --path-output . --all -W -n --keep-going
	@echo "book: $(CURDIR)/_build/html/index.html"

book: execute
	$(MAKE) --no-print-directory html

# Rerun one chapter on other parameters, e.g.
#   make chapter CH=accuracy_vs_compute SEED=1 SET="student=student_micro data.informative_fraction=0.2"
#   make chapter CH=real_videos DATA=ucf101:/data/UCF101:all
# PARAMS passes further papermill options, e.g. a chapter's own knobs: PARAMS="-y 'fractions: [0.1, 0.5]'".
# It executes into $(EXECUTED)/book/partial/ and replaces the chapter only if every cell ran (cdlib.book.execute.partial_path).
chapter: install
	@test -n "$(CH)" || (echo "usage: make chapter CH=<name> [SEED=1] [DATA=<source>] [SET='key=value ...'] [PARAMS='-p knob value ...']"; exit 2)
	@mkdir -p $(EXECUTED)/book/partial
	$(VENV)/bin/jupytext --to ipynb -o - book/$(CH).md | $(VENV)/bin/papermill - $(EXECUTED)/book/partial/$(CH).ipynb \
		-p profile $(PROFILE) -p seed $(SEED) $(if $(SEEDS),-p seeds '$(SEEDS)') $(if $(DATA),-p data '$(DATA)') $(if $(SET),-p overrides '$(SET)') $(PARAMS) \
		|| (echo "$(CH) failed: the executed notebook, with its error, is $(EXECUTED)/book/partial/$(CH).ipynb;" \
			"$(EXECUTED)/book/$(CH).ipynb is unchanged"; exit 1)
	mv $(EXECUTED)/book/partial/$(CH).ipynb $(EXECUTED)/book/$(CH).ipynb

# The tests and nbval's chapters run on one pytest-xdist worker per core. OMP_WAIT_POLICY=PASSIVE: torch's idle
# OpenMP threads sleep rather than spin on the core another worker needs (spinning made two workers slower than one).
# The chapters' own execution keeps the default: it runs alone, and it times the models.
PARALLEL := OMP_WAIT_POLICY=PASSIVE
unit: install
	$(PARALLEL) $(PY) -m pytest -n auto tests

# nbval re-executes every executed chapter (strict: every output must match the stored one).
nbval: install
	@test -n "$(NOTEBOOKS)" || (echo "no executed chapters under $(EXECUTED)/book: run make execute first"; exit 2)
	cd $(EXECUTED)/book && CDLIB_PROGRESS=0 $(PARALLEL) $(CURDIR)/$(PY) -m pytest --nbval -p no:cacheprovider \
		-n auto --dist loadscope \
		--nbval-sanitize-with $(CURDIR)/tests/nbval_sanitize.cfg $(notdir $(NOTEBOOKS))

# Every built page opened in headless chromium: no raw TeX, every image loaded, no network request;
# screenshots under _build/screenshots. Skipped, with a message, where chromium is not installed.
browser: install
	$(PY) -m cdlib book check-html --html _build/html --screenshots _build/screenshots

test: unit execute nbval html browser

bench: install
	$(PY) -m cdlib bench --profile $(PROFILE) --seed $(SEED) --data $(or $(DATA),synthetic) $(foreach s,$(SET),--set $(s)) --out results.json

publish: install
	$(VENV)/bin/ghp-import --no-jekyll --push --force _build/html

clean:
	rm -rf _build

clean-artifacts:
	rm -rf artifacts
