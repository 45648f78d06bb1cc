# salt-kvm: each target does its own set-up (Debian packages, libvirtd, a venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
PYTEST := $(PY) -m pytest

.PHONY: all host venv install test test-kernel test-robust test-unit test-functional test-integration demo docs bench sweep clean

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

sweep: venv
	@$(PY) -m tests.support.sandbox

test: install sweep
	$(PYTEST) tests/unit tests/functional tests/integration

# the tests marked `kernel` inside Debian's own kernel (virtme-ng; one boot):
# bridge VLANs, 802.1Q, LVM, NFS, iSCSI. `make test-kernel ARGS=tests/functional/test_real_kernel.py::test_x`
test-kernel: install
	bash scripts/test-kernel.sh $(ARGS)

# the slow property-based runs (tens of thousands of pillars); CI runs them too
test-robust: venv
	HYPOTHESIS_PROFILE=robust $(PYTEST) tests/unit/test_fuzz_pillar.py -q

test-unit: venv
	$(PYTEST) tests/unit

test-functional: install sweep
	$(PYTEST) tests/functional

test-integration: install sweep
	$(PYTEST) tests/integration

demo: install sweep
	$(PY) demo/run.py

docs: venv
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs built in docs/_build/html"

bench: install
	$(PY) bench/run.py

clean:
	rm -rf build dist *.egg-info docs/_build .pytest_cache
