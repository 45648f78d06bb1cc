"""Fixtures shared by every tier.

Real parts only outside ``tests/unit``: the real libvirtd at ``qemu:///system``,
real tiny VMs, real kernel bridges in throwaway network namespaces. Every object
is named ``kvt-...`` and removed after the test, also when it fails; at the end
of the session whatever this run made and left is swept.
"""

import contextlib
import hashlib
import logging
import os
import pathlib
import shutil
import tempfile

import pytest

from tests.support import sandbox

# every resource keeps plan.py's contract (no state of its own between the
# engine's calls); the engine checks it in this process and in every salt-call
# and minion the tests start, which inherit the environment
os.environ.setdefault("KVT_STRICT_CONTRACT", "1")

REPO = pathlib.Path(__file__).resolve().parent.parent

# Salt's log handlers flush at interpreter exit after pytest closed the streams;
# don't print "--- Logging error ---" for that.
logging.raiseExceptions = False


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
    with contextlib.suppress(Exception):
        sandbox.sweep(only_mine=True)


@pytest.fixture(scope="session")
def salt_factories_config():
    # root_dir of this checkout's own: salt-factories writes the daemons' launcher
    # scripts (with code_dir on their sys.path) into ROOT_DIR/scripts only when
    # they are missing, so a root shared by two checkouts (the default, the temp
    # directory) runs the other checkout's code in every master and minion
    root = (
        pathlib.Path(tempfile.gettempdir())
        / f"salt-factories-{REPO.name}-{hashlib.sha256(str(REPO).encode()).hexdigest()[:8]}"
    )
    root.mkdir(exist_ok=True)
    return {
        "root_dir": root,
        "code_dir": str(REPO),
        "inject_sitecustomize": False,
        "start_timeout": 120 if os.environ.get("CI") else 60,
    }


@pytest.fixture(scope="session")
def conn():
    """A libvirt connection to the real libvirtd (``qemu:///system``)."""
    try:
        connection = sandbox.connect()
    except Exception as exc:  # pylint: disable=broad-except
        pytest.skip(
            f"no libvirtd answers at {sandbox.URI}: {exc} (run `make test`, which starts it)"
        )
    yield connection
    connection.close()


@pytest.fixture
def lan():
    """A host netns with NIC eno1 (192.0.2.10/24, default via 192.0.2.1) and its LAN netns."""
    net = sandbox.Lan().create()
    try:
        yield net
    finally:
        net.remove()


@pytest.fixture
def dir_pool(conn):
    """A running ``kvt-`` dir pool in a fresh directory: ``(name, path)``."""
    pool, path = sandbox.make_dir_pool(conn)
    name = pool.name()
    try:
        yield name, path
    finally:
        with contextlib.suppress(Exception):
            pool = conn.storagePoolLookupByName(name)
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tiny_vm(conn):
    """Factory: ``tiny_vm(start=False, **kw)`` -> ``(domain, disk_path)``; removed afterwards."""
    made = []

    def make(**kwargs):
        dom, disk = sandbox.make_vm(conn, **kwargs)
        made.append((dom.name(), disk))
        return dom, disk

    try:
        yield make
    finally:
        for name, disk in made:
            sandbox.remove_vm(conn, name)
            directory = os.path.dirname(disk)
            # only the directory make_vm made for this VM's own disk, never a pool's
            if os.path.basename(directory) == name:
                shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def names():
    """Factory: ``names(kind)`` -> a fresh ``kvt-`` name; the pools, networks,
    secrets and file directories with those names are removed afterwards."""
    made = []

    def make(kind):
        made.append(sandbox.uid(kind))
        return made[-1]

    try:
        yield make
    finally:
        sandbox.remove_named(made)
