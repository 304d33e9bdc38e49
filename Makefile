# Every command a user needs; README.md shows the two that matter on a fresh machine:
#   make serve   - the shipped model behind the local model server and the proxy
#   make test    - the whole test suite (what .ci/run calls)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data/cifar10-jpeg.tar.gz
RUN ?= runs/default
MODEL_BASE_PATH ?= models/cifar10
ARGS ?=

.PHONY: help venv serve test test-fast screenshots train evaluate export model-card bench-export predict lint format bench-train bench-serving bench-proxy soak compose-up clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/' \
		-e 's|$$(DATA)|$(DATA)|g' -e 's|$$(RUN)|$(RUN)|g' \
		-e 's|$$(MODEL_BASE_PATH)|$(MODEL_BASE_PATH)|g' | expand -t 16

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[proxy,ml,dev]'
	touch $@

venv: $(VENV)/.installed ## create/update the virtual environment

serve: venv ## run the shipped model behind the local model server + proxy (Ctrl-C stops both)
	$(PY) -m stack.serve

test: venv ## run the whole test suite
	$(PY) -m pytest -q $(ARGS)

test-fast: venv ## tests without the slow ones (test set, browser, training, soak, fuzz)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

screenshots: venv ## redraw README's page screenshots (docs/screenshots) in a real browser
	UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q tests/proxy/test_proxy_browser.py -k screenshots

train: venv ## train the default recipe on $(DATA) into $(RUN) (re-run to resume)
	$(PY) -m training.train --data $(DATA) --run-dir $(RUN) $(ARGS)

evaluate: venv ## evaluation report (accuracy, TTA, per-class, confusion matrix) for $(RUN), on its own data unless DATA is given
	$(PY) -m training.evaluate $(if $(filter command line environment,$(origin DATA)),--data $(DATA)) $(RUN) $(ARGS)

export: venv ## export $(RUN) as the next version of $(MODEL_BASE_PATH) (what make serve serves)
	$(PY) -m export --run-dir $(RUN) --base-path $(MODEL_BASE_PATH) $(ARGS)

model-card: venv ## render $(MODEL_BASE_PATH)/MODEL_CARD.md from $(RUN) and the newest version (ARGS="--note ...")
	$(PY) -m export.model_card --run-dir $(RUN) --base-path $(MODEL_BASE_PATH) $(ARGS)

bench-export: venv ## Keras vs SavedModel top-1 agreement on the full test set (ARGS="--limit 20" for a quick try)
	$(PY) -m bench.export_agreement --run-dir $(RUN) --model $(MODEL_BASE_PATH) $(ARGS)

predict: venv ## top-3 for images: make predict ARGS="photo.jpg"
	$(PY) -m export.predict $(ARGS)

lint: venv ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-train: venv ## benchmark a training recipe (appends a row to docs/BENCHMARKS.md)
	$(PY) -m bench.train --data $(DATA) $(ARGS)

bench-serving: venv ## model server latency, throughput and batching against the in-process ceiling
	$(PY) -m bench.serving $(ARGS)

bench-proxy: venv ## proxy latency and throughput, gRPC vs REST vs a naive Flask server
	$(PY) -m bench.proxy $(ARGS)

soak: venv ## rollout, rollback, canary and a killed model server under continuous load
	$(PY) -m bench.soak $(ARGS)

compose-up: ## docker compose stack with the real tensorflow/serving (needs Docker); the proxy image is tagged with the commit, kept in .env
	tag=$$(git rev-parse --short HEAD 2>/dev/null || echo 0.1.0); \
	  { grep -v '^PROXY_TAG=' .env 2>/dev/null; echo "PROXY_TAG=$$tag"; } > .env.new && cat .env.new > .env && rm .env.new
	docker compose up --build

clean: ## remove caches (the dataset cache in .cache/, pytest, ruff; not runs/.cache of the trainer image)
	rm -rf .cache .pytest_cache .ruff_cache
