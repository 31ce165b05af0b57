# Locard: the everyday entry points. Everything runs from the virtual environment at $(VENV).
#
#   make install   build/refresh the venv (seconds when it is current)
#   make demo      start the embedded stack and analyse the sample evidence
#   make test      lint, type-check, import contracts and the test suite (starts PostgreSQL if needed)
#   make lint      ruff, mypy and import-linter only
#   make down      stop the embedded stack
#   make bench     ingest benchmark
#
# make test PYTEST_ARGS='-m "not slow"' passes arguments to pytest.

VENV ?= .venv
PYTEST_ARGS ?=

export LOCARD_VENV := $(VENV)
export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := token
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := false
export OMP_THREAD_LIMIT := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint down bench

install:
	scripts/install.sh

demo: install
	$(VENV)/bin/locard up
	$(VENV)/bin/locard demo

test: install
	scripts/ensure_postgres.sh
	scripts/test.sh $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

down:
	$(VENV)/bin/locard down

bench: install
	$(VENV)/bin/python -m evaluation.bench_ingest

.PHONY: accuracy
accuracy: install  # precision/recall per analyzer: evaluation/results/accuracy.json and accuracy_pr.png
	$(VENV)/bin/python -m evaluation.eval_accuracy
