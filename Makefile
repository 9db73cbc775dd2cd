# hashslot.redis: the two commands a newcomer needs are `make test` (and, with the roles, `make demo`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LINK := .collections/ansible_collections/hashslot/redis
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export ANSIBLE_NOCOLOR := 1
# molecule calls ansible-playbook and ansible-config by name: the virtualenv's come first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# The container scenarios (MOLECULE_SCENARIOS=scale runs one), longest first, taken in turn by MOLECULE_LANES lanes that
# run side by side: a scenario mostly waits (docker exec, apt, gossip), so two lanes suit two cores.
MOLECULE_SCENARIOS ?= default scale secure
MOLECULE_LANES ?= 2

.PHONY: help demo demo-down test check rehearse pytest-all pytest-lane molecule-lane lint static unit integration servers promtool browser containers exporter-archive molecule matrix venv bench docs clean

help:
	@echo "make demo         deploy a 6-node cluster on this machine (ports 7000-7005) with site.yml and print it"
	@echo "make demo-down    stop the demo cluster and delete its data"
	@echo "make check        the fast loop while working on the code: lint, unit tests, module integration tests on Redis 7.0 (about 5 min)"
	@echo "make test         lint, release checks, unit tests, integration tests on Redis 7.0, Redis 8.0 and Valkey 8.1, molecule scenarios, version matrix"
	@echo "make rehearse     CI on a fresh machine: .ci/run in a fresh clone of HEAD with an empty cache directory, timed"
	@echo "make lint         ruff (pep8 at 160 columns, pyflakes)"
	@echo "make static       release checks: ansible-lint --profile production, the changelog, the docs (antsibull-docs), ansible-test sanity (no ignore file)"
	@echo "make unit         unit and property tests of the engine and the monitoring files (no server needed)"
	@echo "make integration  integration tests (HASHSLOT_SERVERS=redis-7.0 to run one build)"
	@echo "make molecule     the container scenarios: $(MOLECULE_SCENARIOS) (docker engine and images made on demand)"
	@echo "make matrix       the version matrix: unit tests and every module on ansible-core 2.16-2.21 and redis-py 4.3-8.x"
	@echo "make bench        benchmarks against redis-cli --cluster (prints measured figures)"
	@echo "make docs         regenerate the reference of the modules, filters, lookup and roles (docs/reference/) with antsibull-docs"
	@echo "make browser      Debian's Chromium, for the test that looks at the cluster report in a browser (installs it when missing)"
	@echo "make clean        remove the virtualenv and test output (server builds stay cached)"

# Debian and Ubuntu ship python3 without ensurepip: install python3-venv (as root, or with sudo) when needed.
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); tools/install-venv-support && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed $(LINK)

# ansible finds the collection through .collections/ansible_collections/hashslot/redis -> the checkout.
$(LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../.. $@

# The demo is site.yml against inventories/local, as an operator runs it (a second run changes nothing), then
# playbooks/status.yml prints the cluster.
demo: venv
	$(BIN)/ansible-playbook -i inventories/local site.yml
	$(BIN)/ansible-playbook -i inventories/local playbooks/status.yml

demo-down: venv
	$(BIN)/ansible-playbook -i inventories/local playbooks/teardown.yml -e hashslot_teardown_confirm=yes

SERVERS ?=
servers:
	tools/redis-servers ensure $(SERVERS)

# promtool checks docs/monitoring/ (alert rules and their tests, the generated scrape configuration): taken from
# Debian's prometheus package, downloaded and unpacked into the cache, never installed (that would start a server).
promtool:
	tools/promtool ensure

# Debian's Chromium (apt-get install --no-install-recommends chromium), in which tests/integration/test_report_browser.py
# looks at the cluster report. The test runs `tools/chromium ensure` itself: in make test that is in the machine's
# pytest process, the shorter of the two, not before both.
browser:
	tools/chromium ensure

lint: venv
	$(BIN)/ruff check .

unit: venv promtool
	$(BIN)/python -m pytest tests/unit

integration: venv servers
	$(BIN)/python -m pytest tests/integration

# A docker engine (Debian's docker.io, dockerd started in the background when none answers) and the Debian 12/13
# systemd base images, built with debootstrap and cached; nothing is pulled.
containers:
	tools/container-images ensure bookworm trixie

# The redis_exporter role's archive method, tested in molecule/default with an upstream-shaped release archive made
# from Debian's package (no release can be downloaded here).
exporter-archive:
	tools/exporter-archive ensure >/dev/null

# tools/molecule-scenarios runs them MOLECULE_LANES at a time, each into tests/output/molecule/<scenario>.log.
# The default scenario's upgrades use this machine's builds (tools/redis-servers ensure, from test_upgrade.py: the
# pytest lane of make test may still be compiling them, and the scenarios that need none go on meanwhile).
molecule: venv containers exporter-archive
	tools/molecule-scenarios -j $(MOLECULE_LANES) $(MOLECULE_SCENARIOS)

# The version matrix (tests/matrix/versions.txt): a virtualenv per row, each pairing an ansible-core line with a redis-py
# line so that every supported version of both runs, cached by version; the unit tests that use either library and
# every module once (tests/matrix/smoke.yml) on Debian's Redis 7.0. The rows of ansible-core 2.20 and later run on
# Debian 13's Python 3.13, in a container of the trixie image (made on demand) on this machine's network.
matrix: venv
	$(BIN)/python tools/version_matrix.py

# Two lanes side by side, each preparing what it needs first: the pytest lane (the source builds compiled beside two
# pytest processes, then the release checks) and the molecule lane (the container images, then the scenarios; the
# default scenario's upgrade waits on tools/redis-servers' lock for the builds). No sub-make forces a -j of its own:
# GNU make 4.3 would then leave this make's jobserver pipe open in every process it starts, and a daemon holding its
# write end (dockerd) would keep this make from ever exiting. --output-sync prints each lane's output whole when it
# ends; tools/test_times.py then prints where the time went, passed or failed.
TIMES := tests/output/times
test:
	@rm -rf $(TIMES) tests/output/pytest*.xml tests/output/molecule/*.seconds; mkdir -p $(TIMES)
	@tools/timed 'lint and venv' $(MAKE) --no-print-directory lint; rc=$$?; \
	if [ $$rc -eq 0 ]; then \
	  tools/timed 'both lanes' $(MAKE) --no-print-directory -j2 --output-sync=target pytest-lane molecule-lane \
	    MOLECULE_LANES=$(TEST_MOLECULE_LANES); rc=$$?; \
	fi; \
	$(PYTHON) tools/test_times.py; exit $$rc

# The pytest lane beside the molecule lane: Debian's Redis 7.0 and promtool first, then the source builds compile in
# the background while two pytest processes run. The first (HASHSLOT_TEST_SHARE=machine) takes the unit tests and the
# roles', playbooks' and artifact's tests, which change this machine (never two of them at once); the second (modules)
# the modules' tests on every server, Debian's Redis 7.0 first while the others compile, then each source build's
# (waiting for it on tools/redis-servers' lock). Each has its own loopback ports (HASHSLOT_PORT_SLICE). The second's
# output is printed after the first's (tests/output/pytest-modules.log); the builds': tests/output/servers.log. The
# release checks (make static) follow the first, beside the second.
pytest-lane: venv
	@tools/timed 'pytest lane: redis 7.0, promtool' bash -c '$(MAKE) --no-print-directory promtool && $(MAKE) --no-print-directory SERVERS=redis-7.0 servers'
	@mkdir -p tests/output; tools/timed 'pytest lane: builds beside pytest' tools/redis-servers ensure >tests/output/servers.log 2>&1 & builds=$$!; \
	HASHSLOT_TEST_SHARE=modules HASHSLOT_PORT_SLICE=1/2 tools/timed 'pytest lane: pytest, the modules on every server' \
	  $(BIN)/python -m pytest --junitxml=tests/output/pytest-modules.xml tests/integration >tests/output/pytest-modules.log 2>&1 & second=$$!; \
	HASHSLOT_TEST_SHARE=machine HASHSLOT_PORT_SLICE=0/2 tools/timed 'pytest lane: pytest, unit, roles, playbooks' \
	  $(BIN)/python -m pytest --junitxml=tests/output/pytest.xml tests/unit tests/integration; rc=$$?; \
	tools/timed 'pytest lane: static' bash -c '$(STATIC_CHECKS)' || rc=1; \
	wait $$second || rc=1; \
	echo '================ pytest, the modules on every server (tests/output/pytest-modules.log)'; cat tests/output/pytest-modules.log; \
	wait $$builds || { echo 'tools/redis-servers ensure failed; last lines of tests/output/servers.log:'; tail -n 30 tests/output/servers.log; rc=1; }; \
	exit $$rc

# The images (debootstrap: downloads; tools/redis-servers' mirror), then the scenarios, then the version matrix (after a
# failed scenario too): the molecule lane ends minutes before the pytest lane, whose last minutes leave the processors
# half idle, and the matrix needs the trixie image.
molecule-lane: venv
	@tools/timed 'molecule lane: images' $(MAKE) --no-print-directory containers exporter-archive
	@rc=0; tools/timed 'molecule lane: scenarios' $(MAKE) --no-print-directory molecule || rc=1; \
	tools/timed 'molecule lane: version matrix' $(MAKE) --no-print-directory matrix || rc=1; \
	exit $$rc

# The fast loop while working on the code: lint, the unit tests and the modules' integration tests on Redis 7.0
# (Debian's package: nothing to build), in CHECK_WORKERS pytest-xdist workers, each taking whole files (a file's
# clusters are module fixtures): the tests wait on servers, gossip and failovers, so three share two cores.
# Roles, playbooks, the artifact and the other builds are make test's. 5.0 min on a quiet machine (docs/testing.md).
CHECK_TESTS ?= $(addprefix tests/integration/test_,acl_file.py cluster_create.py cluster_info.py cluster_node.py \
	cluster_reshard.py failover.py redis_config.py redis_snapshot.py report_browser.py secrets.py secure_modules.py transient_states.py)
CHECK_WORKERS ?= 3
check: lint venv promtool
	tools/redis-servers ensure redis-7.0
	HASHSLOT_SERVERS=redis-7.0 $(BIN)/python -m pytest -n $(CHECK_WORKERS) --dist loadfile tests/unit $(CHECK_TESTS)

# What CI does on a machine that has never run it: a fresh clone of HEAD (what is committed), an empty cache
# directory, CI=true and no standard input; prints the time. The clone and cache stay in REHEARSAL_DIR for a look.
REHEARSAL_DIR ?= /var/tmp/hashslot-rehearsal
rehearse:
	tools/rehearse $(REHEARSAL_DIR)

# What Galaxy and Automation Hub check before they accept a collection. The sanity tests fill their own virtualenvs
# from the package index (tools/ansible-sanity). antsibull-docs lint-collection-docs checks every plugin's and role's
# documentation: the schema, the markup (rendered as make docs renders it) and the references to this collection and
# to those it depends on (ansible.builtin included).
LINT_DOCS := $(BIN)/antsibull-docs lint-collection-docs --plugin-docs --output-format simplified-rst \
	--validate-collection-refs dependent --disallow-unknown-collection-refs .
STATIC_CHECKS := set -e; $(BIN)/ansible-lint --nocolor; $(BIN)/antsibull-changelog lint; $(LINT_DOCS); tools/ansible-sanity
static: venv
	$(STATIC_CHECKS)

TEST_MOLECULE_LANES ?= 2

pytest-all: venv servers promtool
	$(BIN)/python -m pytest tests/unit tests/integration

bench: venv servers
	$(BIN)/python bench/create_bench.py --rounds 5
	$(BIN)/python bench/create_bench.py --rounds 3 --node-timeout 1000 --nodes 6 30 60 90 120
	$(BIN)/python bench/reshard_bench.py

# The plugin and role reference: antsibull-docs renders the modules', filters' and lookup's DOCUMENTATION and the roles'
# meta/argument_specs.yml as simplified RST, which GitHub shows, one page each and an index. It writes no version or
# date, so the same sources give the same files; the pages of plugins and roles that are gone are removed (--cleanup
# everything: REFERENCE_DIR holds nothing else). The pages are committed: tests/unit/test_reference_docs.py writes them
# into a directory of its own and fails, naming them, while they differ.
REFERENCE_DIR ?= docs/reference
docs: venv
	mkdir -p $(REFERENCE_DIR)
	$(BIN)/antsibull-docs collection --use-current --squash-hierarchy --output-format simplified-rst --no-add-antsibull-docs-version \
	  --fail-on-error --cleanup everything --dest-dir $(REFERENCE_DIR) hashslot.redis

clean:
	rm -rf $(VENV) .collections .pytest_cache .hypothesis tests/output
