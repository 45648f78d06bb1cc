"""Functional tier: the ``kvm`` loader modules through Salt's own loader.

``loaders.modules.kvm.*`` and ``loaders.states.kvm.*`` are the real modules as
``salt-call`` loads them (found through the ``salt.loader`` entry point of the
installed package), run against the real libvirtd and real bridges.
"""

import pytest
from saltfactories.utils import random_string
from saltfactories.utils.functional import Loaders


@pytest.fixture(scope="package")
def minion_opts(salt_factories, tmp_path_factory):
    state_tree = tmp_path_factory.mktemp("state-tree")
    factory = salt_factories.salt_minion_daemon(
        random_string("kvt-func-"),
        overrides={
            "file_client": "local",
            "file_roots": {"base": [str(state_tree)]},
            "pillar_roots": {"base": [str(state_tree)]},
            "multiprocessing": False,
        },
    )
    return factory.config.copy()


@pytest.fixture(scope="package")
def loaders(minion_opts):
    return Loaders(minion_opts, loaded_base_name=f"{__name__}.loaded")


@pytest.fixture(autouse=True)
def reset_loaders_state(loaders):
    try:
        yield
    finally:
        loaders.reset_state()


@pytest.fixture
def kvm(loaders):
    """The ``kvm`` execution module."""
    return loaders.modules.kvm


@pytest.fixture
def kvm_state(loaders):
    """The ``kvm`` state module."""
    return loaders.states.kvm


@pytest.fixture(params=[False, True], ids=["apply", "test-mode"])
def testmode(request):
    """Run a state test in both modes (test=False and test=True)."""
    return request.param
