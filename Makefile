# make demo  - bring up the local stack and run the main job on the embedded defaults
# make test  - lint, types, import layering, generated files, then every test
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.cache/nico-flow/tools/bin/uv)
PY := .venv/bin/python
PKG := operator/nicoflow

.PHONY: setup test check lint fmt typecheck imports generated pytest unit crds protos docs demo demo-down images clean

setup:
	@bash hack/setup.sh

test: setup check pytest

check: lint typecheck imports generated

lint:
	.venv/bin/ruff check operator tests hack benchmarks
	.venv/bin/ruff format --check operator tests hack benchmarks

fmt:
	.venv/bin/ruff format operator tests hack
	.venv/bin/ruff check --fix operator tests hack

typecheck:
	.venv/bin/mypy

imports:
	.venv/bin/lint-imports

generated:
	$(PY) hack/gen_protos.py --check
	$(PY) hack/gen_api_docs.py --check
	.venv/bin/flow crds --check --also charts/nico-flow/files/crds
	$(PY) hack/gen_argocd_cm.py --check

pytest:
	.venv/bin/pytest

unit:
	.venv/bin/pytest -m unit -q

crds:
	.venv/bin/flow crds --also charts/nico-flow/files/crds
	$(PY) hack/gen_argocd_cm.py

protos:
	$(PY) hack/gen_protos.py

docs:
	$(PY) hack/gen_api_docs.py

.PHONY: bench
bench: setup
	$(PY) -m benchmarks.run

demo: setup
	.venv/bin/flow dev demo

demo-down:
	.venv/bin/flow dev down

# the local node's images (project, PostgreSQL, pause), from Debian packages and PyPI
images:
	@bash hack/build-images.sh

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache

# make dst SEEDS=20000 [START=0] [JOBS=2] - a longer deterministic simulation run
# than the corpus in `make test`; prints every failing seed (replay one with
# `cd tests && ../.venv/bin/python -m dst.run --seed S`)
.PHONY: dst
SEEDS ?= 20000
START ?= 0
JOBS ?= 2
dst: setup
	cd tests && ../$(PY) -m dst.run --seeds $(SEEDS) --start $(START) --jobs $(JOBS)
