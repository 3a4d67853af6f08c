# tutormax.cluster: every entry point a developer or CI needs.
#   make up       the whole stack on local containers      make test   everything CI checks
#   make down     remove the local cluster                 make lint   yamllint, ansible-lint, ruff, sanity
#   make status   show the local cluster                   make image  the offline test-host image
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := python3
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export NO_COLOR := 1
export ANSIBLE_FORCE_COLOR := false
export PY_COLORS := 0
# Molecule scenarios run in this order; scenarios not named here run after them.
SCENARIO_ORDER := common postgresql redis nginx_lb cluster
SCENARIOS ?= $(strip $(foreach s,$(SCENARIO_ORDER),$(wildcard molecule/$(s)/molecule.yml)) \
  $(filter-out $(foreach s,$(SCENARIO_ORDER),molecule/$(s)/molecule.yml),$(sort $(wildcard molecule/*/molecule.yml))))
SCENARIO_NAMES := $(patsubst molecule/%/molecule.yml,%,$(SCENARIOS))
STAGE := scripts/stage.sh
# Limits per stage of `make test` (scripts/stage.sh prints what still runs, then ends the stage): a
# hung command fails its own stage within minutes instead of holding CI to its 90-minute limit.
# Each is several times the stage's usual length (docs/TESTING.md, CI figures); the cluster's leaves
# the other stages (about 20 minutes on a loaded machine) room within CI's 90 minutes, so that a
# cluster stage that runs out still ends with its process tree and the summary.
ROLE_TIMEOUT ?= 1200
CLUSTER_TIMEOUT ?= 3900
# The collection's unit tests, on every core (pytest-xdist): each runs ansible-playbook.
UNIT_TESTS := scripts/pytest.sh tests -n auto

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# ---------------------------------------------------------------------------- environment
$(STAMP): requirements/dev.txt requirements/bootstrap.txt
	@echo "venv: building $(VENV) from requirements/dev.txt"
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements/bootstrap.txt
	@$(VENV)/bin/uv pip sync -q --python $(VENV)/bin/python requirements/dev.txt
	@touch $@

.PHONY: venv
venv: $(STAMP) ## Create or update the pinned Python environment (.venv)

.PHONY: lock
lock: $(STAMP) ## Re-resolve requirements/dev.txt from requirements/dev.in
	uv pip compile -q --python-version 3.11 --no-header requirements/dev.in -o requirements/dev.txt

.PHONY: host-packages
host-packages: ## Install the Debian packages the controller needs (debootstrap, PostgreSQL, Redis)
	@scripts/ensure-host-packages.sh

.PHONY: docker
docker: ## Make sure a Docker engine answers (installs and starts one if needed)
	@scripts/ensure-docker.sh

.PHONY: image
image: host-packages docker ## Build the offline Debian 12 systemd test-host image (only when its recipe changed)
	@images/testhost/build.sh

# ---------------------------------------------------------------------------- checks
.PHONY: lint
lint: $(STAMP) ## yamllint, ansible-lint (production profile), ruff, mypy, ansible-test sanity
	yamllint --strict .
	ansible-lint --profile production
	ruff check .
	ruff format --check .
	mypy
	scripts/sanity.sh

.PHONY: sanity
sanity: $(STAMP) ## ansible-test sanity on the built collection archive (validate-modules, pylint, ...)
	scripts/sanity.sh

.PHONY: test-unit
test-unit: $(STAMP) ## pytest: the collection's own unit tests (tests/)
	@$(UNIT_TESTS)

.PHONY: test-app
test-app: $(STAMP) host-packages ## pytest: the app against real PostgreSQL, replica, Redis and Sentinel
	@scripts/pytest.sh app/tests

.PHONY: molecule
molecule: $(STAMP) image ## Every Molecule scenario (or SCENARIOS="molecule/x/molecule.yml ...")
	@rc=0; for s in $(SCENARIO_NAMES); do $(STAGE) molecule:$$s molecule test -s $$s || rc=1; done; exit $$rc

.PHONY: build
build: $(STAMP) ## Build the collection archive
	ansible-galaxy collection build --force --output-path build/

.PHONY: test
test: ## Everything CI checks, with a summary of what ran and how long each stage took
	@rm -f .cache/stages/results.tsv
	@$(STAGE) host-packages scripts/ensure-host-packages.sh || true
	@$(STAGE) docker scripts/ensure-docker.sh || true
	@$(STAGE) venv $(MAKE) --no-print-directory venv || true
	@$(STAGE) image images/testhost/build.sh || true
	@STAGE_TIMEOUT=$(ROLE_TIMEOUT) $(STAGE) lint $(MAKE) --no-print-directory lint || true
	@STAGE_TIMEOUT=$(ROLE_TIMEOUT) $(STAGE) unit $(UNIT_TESTS) || true
	@if [ -d app ]; then STAGE_TIMEOUT=$(ROLE_TIMEOUT) $(STAGE) app scripts/pytest.sh app/tests || true; fi
	@$(STAGE) build $(MAKE) --no-print-directory build || true
	@for s in $(SCENARIO_NAMES); do \
	  limit=$(ROLE_TIMEOUT); [ $$s != cluster ] || limit=$(CLUSTER_TIMEOUT); \
	  STAGE_TIMEOUT=$$limit $(STAGE) molecule:$$s molecule test -s $$s || molecule destroy -s $$s >/dev/null 2>&1 || true; done
	@scripts/stages-summary.sh

# ---------------------------------------------------------------------------- local cluster
.PHONY: up
up: $(STAMP) image ## Deploy the whole stack on local containers (eleven systemd hosts), then verify it
	@scripts/up.sh

.PHONY: test-rolling
test-rolling: up ## Rolling update under 110 req/s on the local cluster: update, failing release, rollback, back
	@python benchmarks/rolling_update.py --steps $(or $(ROLLING_STEPS),update,fail,rollback,back)

.PHONY: down
down: ## Remove the local cluster's containers, network and volumes
	@scripts/ensure-docker.sh
	@ids=$$(docker ps -aq --filter label=tutormax.cluster=local); \
	  if [ -n "$$ids" ]; then docker rm -f -v $$ids >/dev/null; fi
	@docker network rm tutormax-local >/dev/null 2>&1 || true
	@vols=$$(docker volume ls -q --filter label=tutormax.cluster=local); \
	  if [ -n "$$vols" ]; then docker volume rm $$vols >/dev/null; fi
	@rm -rf .cache/facts
	@echo "make down: local cluster removed (containers, network, volumes); secrets kept in inventories/local"

.PHONY: status
status: ## Show the local cluster's containers
	@docker ps -a --filter label=tutormax.cluster=local --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'

.PHONY: clean
clean: ## Remove build outputs and caches (keeps .venv)
	rm -rf build .cache .pytest_cache .ruff_cache .mypy_cache
