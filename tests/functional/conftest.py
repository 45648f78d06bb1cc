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


# --- real guests (tests/support/guest.py) --------------------------------------


@pytest.fixture(scope="session")
def guest_image():
    """The kernel + initramfs every guest boots (built once, cached under /var/tmp/kvt-cache)."""
    from tests.support import guest  # pylint: disable=import-outside-toplevel

    why = guest.missing()
    if why:
        pytest.skip(f"no real guest: {why} (make install installs it)")
    return guest.image()


@pytest.fixture(scope="session")
def guest_type(conn, guest_image):
    """``kvm`` where a KVM guest boots Linux on this host, else ``qemu`` (TCG); probed once and
    cached."""
    from tests.support import guest  # pylint: disable=import-outside-toplevel

    return guest.domain_type(conn, guest_image)


@pytest.fixture
def guests(conn, guest_image, guest_type):
    """Factory: ``guests(work=[...], disks=[...], nics=[...], ip=..., define=False)`` -> a running
    :class:`tests.support.guest.Guest` (waited for until its init is ready); removed afterwards,
    with its files directory (where ``guests.dir(guest)`` keeps its console and disks)."""
    import shutil  # pylint: disable=import-outside-toplevel

    from tests.support import guest, sandbox  # pylint: disable=import-outside-toplevel

    made = []

    def start(name=None, **kwargs):
        name = name or sandbox.uid("g-")
        made.append(name)
        return guest.start(conn, guest_image, guest_type, name=name, **kwargs)

    try:
        yield start
    finally:
        for name in made:
            sandbox.remove_vm(conn, name)
            shutil.rmtree(f"{sandbox.FILES_ROOT}/{name}", ignore_errors=True)


@pytest.fixture
def vm_name(conn, names):
    """A fresh ``kvt-vm-`` name for a VM the test declares; afterwards the VM, its console
    log and its cloud-init seed are removed."""
    import contextlib  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel

    from salt_kvm import cloudinit  # pylint: disable=import-outside-toplevel
    from salt_kvm import vm as vm_mod  # pylint: disable=import-outside-toplevel
    from tests.support import sandbox  # pylint: disable=import-outside-toplevel

    name = names("vm-")
    try:
        yield name
    finally:
        sandbox.remove_vm(conn, name)
        for path in (vm_mod.console_path(name), cloudinit.seed_path(name)):
            with contextlib.suppress(OSError):
                os.remove(path)


@pytest.fixture
def root_lan(conn):
    """A LAN namespace with its gateway, reached from the root namespace through a ``kvt-``
    uplink veth (:class:`tests.support.guest.RootLan`): where a guest's bridge must live,
    since libvirtd puts VM taps in the root namespace."""
    from tests.support import guest  # pylint: disable=import-outside-toplevel

    net = guest.free_subnet(conn)
    if net is None:
        pytest.skip("no documentation subnet is free in the root namespace")
    lan = guest.RootLan(net).create()
    try:
        yield lan
    finally:
        lan.remove()
