# salt-kvm: each target does its own set-up (Debian packages, libvirtd, a venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
PYTEST := $(PY) -m pytest

.PHONY: all host venv install dist lint test test-docs test-guest test-kernel test-robust test-unit test-functional test-integration demo docs docs-shots bench sweep clean

all: test

host:
	@bash scripts/setup-host.sh

$(VENV)/.stamp: setup.cfg pyproject.toml | host
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -U pip wheel setuptools
	$(PIP) install -q --disable-pip-version-check '.[tests,docs]'
	touch $@

venv: $(VENV)/.stamp

# the installed copy is what salt-call finds through the salt.loader entry point
install: host venv
	@$(PIP) install -q --disable-pip-version-check --no-deps --force-reinstall . 2>&1 | grep -v -i warning || true

# dist/salt_kvm-<version>.tar.gz and dist/salt_kvm-<version>-py3-none-any.whl (the wheel is
# built from the sdist, so both carry the formula); install them on minions as README.md shows
# (no `venv` prerequisite when .venv exists: `host` would run scripts/setup-host.sh,
# which removes every kvt- namespace and link on the machine)
dist:
	@test -x $(PY) || $(MAKE) venv
	rm -rf dist build *.egg-info && mkdir dist
	@$(PY) -m build --no-isolation --outdir dist . >dist/build.log 2>&1 || { cat dist/build.log; exit 1; }
	@ls -1 dist/*.whl dist/*.tar.gz

sweep: venv
	@$(PY) -m tests.support.sandbox

# ruff (style, pyflakes, bugbear; pyproject.toml names the rules), mypy over the typed
# library, bandit at medium severity and up: all three clean, or make test stops here
LINTED := salt_kvm _modules _states _runners _grains _output tests demo bench scripts docs/conf.py
lint: venv
	$(VENV)/bin/ruff check -q $(LINTED)
	$(VENV)/bin/ruff format -q --check $(LINTED)
	$(VENV)/bin/mypy
	$(VENV)/bin/bandit -q -ll -r salt_kvm _modules _states _runners _grains _output

# everything but the executed docs (make test-docs) and the real-guest tier (make test-guest),
# which CI runs next
test: lint install sweep
	$(PYTEST) tests/unit tests/functional tests/integration --ignore-glob='*/test_guest_*.py' \
		--ignore-glob='*/test_docs_commands.py' --ignore-glob='*/test_docs_examples.py' --durations=20

# the docs, executed: every command of the README and the docs run in a private docs host
# (its own libvirtd, salt-master and minion), every example pillar applied twice for real
test-docs: install sweep
	$(PYTEST) tests/functional/test_docs_commands.py tests/functional/test_docs_examples.py

# real Linux guests (Debian's kernel + a busybox initramfs, or a small debootstrap
# Debian; TCG where nested KVM does not boot Linux): what a running VM sees
test-guest: install sweep
	$(PYTEST) tests/functional/test_guest_*.py

# the tests marked `kernel` inside Debian's own kernel (virtme-ng; one boot):
# bridge VLANs, 802.1Q, LVM, NFS, iSCSI. `make test-kernel ARGS=tests/functional/test_real_kernel.py::test_x`
test-kernel: install
	bash scripts/test-kernel.sh $(ARGS)

# the slow property-based runs (tens of thousands of pillars, and the long search for
# ways to lose data against the real libvirtd); CI runs them too
test-robust: install
	HYPOTHESIS_PROFILE=robust $(PYTEST) tests/unit/test_fuzz_pillar.py tests/functional/test_data_safety_search.py -q

test-unit: venv
	$(PYTEST) tests/unit

test-functional: install sweep
	$(PYTEST) tests/functional

test-integration: install sweep
	$(PYTEST) tests/integration

demo: install sweep
	$(PY) demo/run.py

docs:
	@test -x $(VENV)/bin/sphinx-build || $(MAKE) venv
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs built in docs/_build/html"

# screenshots of the key pages in headless Chromium (Debian's chromium, installed here if missing)
# into docs/_build/shots, failing on a page that did not render or a code block that is clipped
docs-shots: docs
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(PY) scripts/docs_shots.py

bench: install
	$(PY) bench/run.py

clean:
	rm -rf build dist *.egg-info docs/_build .pytest_cache
