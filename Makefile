# One entry point for people and CI. `make test` and `make demo` work from a fresh clone:
# they install what is missing (venv, packages, Kafka jars, redis-server, kcat) and start the services.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
SERVICES := deploy/local/services
CLUSTER  := deploy/local/cluster
DURATION ?=
PYTEST_ARGS ?=
BENCH_SCALE ?= 1
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-installed
# The secured local services: the harness (tests, the demo's feed and tail, the bench) acts as the admin;
# a worker it starts runs as the app's principal (stream-app).
AS_ADMIN = eval "$$($(SERVICES) env admin)" &&
QUIX_VENV := .local/bench/quix-venv

.PHONY: image image-tools k8s-snapshots help install services down browser demo lint format typecheck schemas monitoring unit integration test check clean bench bench-smoke chaos chaos-cluster docs

help:
	@echo "make demo [DURATION=90]  services + worker + simulated feed, alerts printed live (Ctrl-C stops)"
	@echo "make test                 install, start services, lint, type-check, unit and integration tests"
	@echo "make services | down      start | stop the local Kafka, Redis and schema registry (down: the cluster profile too)"
	@echo "make lint | typecheck | schemas | monitoring | unit | integration | format"
	@echo "make monitoring           promtool/amtool checks and promtool rule unit tests (deploy/prometheus, deploy/alertmanager)"
	@echo "make chaos [CHAOS_SEEDS='1 2 3']  the chaos tests (SIGKILL, Redis outage) with more seeds of the 100k stream"
	@echo "make chaos-cluster        3 brokers + Redis Cluster + 3 workers under broker, Redis and worker faults (~15 min)"
	@echo "make bench [BENCH_SCALE=0.1] [BENCH_ARGS=...]  end-to-end benchmark: .local/bench/results.json and .png"
	@echo "make bench-smoke          the benchmark harness at tiny sizes (a few min): checks that it runs, not speed"
	@echo "make docs                 regenerate docs/settings.md from stream_app/settings.py"
	@echo "make image [IMAGE=...]    build deploy/container/Containerfile with buildah (PYTHON_IMAGE=... for a local base)"
	@echo "make k8s-snapshots        re-render deploy/k8s's overlays into tests/unit/snapshots (review the diff)"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)
	@$(SERVICES) install

services: $(STAMP)
	@$(SERVICES) up

down:
	-@$(SERVICES) down
	@$(CLUSTER) down

demo: services
	$(AS_ADMIN) $(BIN)/stream-app demo $(if $(DURATION),--duration $(DURATION)) --worker-env .local/secrets/stream-app.env

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: services
	$(AS_ADMIN) $(BIN)/pytest tests/integration $(PYTEST_ARGS)

# docs/settings.md is generated from the settings object (tests/unit/test_settings_doc.py checks it).
docs: $(STAMP)
	$(BIN)/python -m stream_app.tools.settings_doc > docs/settings.md.tmp
	mv docs/settings.md.tmp docs/settings.md

schemas: $(STAMP)
	$(BIN)/stream-app schemas check

# The image, built with buildah (Debian's; no daemon): rootful or not, chroot isolation and vfs storage
# work inside a container. Where no registry serves python:3.11-slim, make a base from Debian's
# packages first and name it: deploy/container/debian-base && make image PYTHON_IMAGE=localhost/stream-app-base:bookworm
IMAGE ?= localhost/stream-app:dev
PYTHON_IMAGE ?= python:3.11-slim
image:
	buildah --storage-driver $${BUILDAH_STORAGE_DRIVER:-vfs} bud --isolation chroot \
	  --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -f deploy/container/Containerfile -t $(IMAGE) .

# deploy/k8s's overlays as rendered, the snapshots tests/unit/test_deploy.py compares with
k8s-snapshots: install
	UPDATE_SNAPSHOTS=1 $(BIN)/pytest tests/unit/test_deploy.py -q -k rendered

# Prometheus and Alertmanager configuration: syntax, rules, and the rules' unit tests.
# promtool and amtool come with Debian's prometheus and prometheus-alertmanager (services install them).
monitoring: install
	promtool check config --syntax-only deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.yml
	amtool check-config deploy/alertmanager/alertmanager.yml

# Longer chaos runs than make test's: every chaos test in its long form (CHAOS_LONG=1: Redis killed three
# times mid-stream, Redis and the broker each down 2 min, the whole 100,000-observation aggregate stream,
# ...) with more seeds, then the cluster's Redis nodes restarted one by one.
CHAOS_SEEDS ?= 1 2 3
chaos: services
	@for seed in $(CHAOS_SEEDS); do \
	  echo "chaos: seed $$seed"; \
	  $(AS_ADMIN) CHAOS_SEED=$$seed CHAOS_LONG=1 $(BIN)/pytest -m chaos tests/integration $(PYTEST_ARGS) || exit 1; \
	done
	@$(CLUSTER) up
	eval "$$($(CLUSTER) env admin)" && $(BIN)/pytest -m cluster tests/cluster -k one_by_one -s $(PYTEST_ARGS)

# Faults on the cluster profile: three brokers, a Redis Cluster (3 primaries + 3 replicas), three
# workers and ~200,000 observations (tests/cluster/). Its report: .local/reports/cluster_chaos.json.
chaos-cluster: $(STAMP)
	@$(CLUSTER) up
	eval "$$($(CLUSTER) env admin)" && $(BIN)/pytest -m cluster tests/cluster -s $(PYTEST_ARGS)

# Debian's chromium for the screen's browser test (tests/integration/test_screen.py)
browser:
	@$(SERVICES) browser

# Debian's buildah, podman and debootstrap: tests/integration/test_image.py builds and runs the image
image-tools:
	@$(SERVICES) image-tools

# the single-node suite (the 25 slowest tests listed), then the short cluster chaos test on the cluster
# profile (make chaos-cluster: all)
test: services browser image-tools lint typecheck schemas monitoring
	$(AS_ADMIN) $(BIN)/pytest tests --ignore=tests/cluster --durations=25 $(PYTEST_ARGS)
	@$(CLUSTER) up
	eval "$$($(CLUSTER) env admin)" && $(BIN)/pytest -m cluster tests/cluster -k short $(PYTEST_ARGS)

check: test

# The benchmark's extras (profiler, chart) in .venv; the Quix Streams peer in its own virtualenv,
# since quixstreams pins an older confluent-kafka than this project's.
$(BENCH_STAMP): $(STAMP) bench/quix-requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	@test -x $(QUIX_VENV)/bin/python || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install -q --disable-pip-version-check -r bench/quix-requirements.txt
	@touch $(BENCH_STAMP)

bench: services $(BENCH_STAMP)
	$(AS_ADMIN) $(BIN)/python -m bench.run --scale $(BENCH_SCALE) $(BENCH_ARGS)

bench-smoke: services $(BENCH_STAMP)
	$(AS_ADMIN) $(BIN)/python -m bench.run --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
