"""Integration tier: real salt-master and minions (pytest-salt-factories).

The ``fleet*`` fixtures build a fleet on this machine: one master in the root
network namespace and :data:`FLEET_SIZE` minions, each in a network namespace
of its own, reaching the master over veth links (198.51.100.128/26), as separate
hypervisors would (see :mod:`tests.support.fleet`). They are session-scoped
and started only by the tests that ask for them.
"""

import contextlib
import pathlib
import shutil

import pytest
import yaml

from tests.conftest import REPO
from tests.support import fleet as fleetlib

FLEET_SIZE = 3


class Fleet:
    """The running fleet: master, minions, the network and per-minion pillar."""

    def __init__(self, net, master, pillar_tree, state_tree):
        self.net = net
        self.master = master
        self.pillar_tree = pathlib.Path(pillar_tree)
        self.state_tree = pathlib.Path(state_tree)
        self.minions = []  # factories, started
        self.netns = {}  # minion id -> netns
        self.salt_cli = master.salt_cli(timeout=300)
        self.run_cli = master.salt_run_cli(timeout=300)
        self._pillars = {}

    @property
    def ids(self):
        return [m.id for m in self.minions]

    def name(self, minion_id, kind):
        """A distinct ``kvt-`` libvirt object name for one minion (libvirtd is shared)."""
        index = self.ids.index(minion_id) + 1
        return f"{self.net.prefix}-{kind}{index}"

    def set_pillar(self, minion_id, kvm, extra=None):
        """Give ``minion_id`` the ``kvm`` pillar ``kvm`` (through the pillar top file)."""
        self._pillars[minion_id] = dict(extra or {}, kvm=kvm)
        self._write()

    def clear_pillar(self):
        self._pillars = {}
        self._write()

    def _write(self):
        top = {"base": {}}
        for minion_id, data in self._pillars.items():
            sls = "fleet_" + minion_id.replace("-", "_").replace(".", "_")
            top["base"][minion_id] = [sls]
            (self.pillar_tree / f"{sls}.sls").write_text(
                yaml.safe_dump(data, default_flow_style=False)
            )
        (self.pillar_tree / "top.sls").write_text(yaml.safe_dump(top, default_flow_style=False))

    def salt(self, *args, tgt=None, tgt_type="list", **kwargs):
        """``salt TGT ARGS``; by default every minion of this fleet (as a list)."""
        if tgt is None:
            tgt, tgt_type = ",".join(self.ids), "list"
        flag = {
            "glob": (),
            "list": ("-L",),
            "grain": ("-G",),
            "pillar": ("-I",),
            "compound": ("-C",),
        }[tgt_type]
        return self.salt_cli.run(*flag, *args, minion_tgt=tgt, **kwargs)

    def run(self, *args, **kwargs):
        """``salt-run ARGS``."""
        return self.run_cli.run(*args, **kwargs)


@pytest.fixture(scope="session")
def fleet_net():
    try:
        net = (
            fleetlib.FleetNet.free()
        )  # 198.51.100.128/26, or .192/26 while another fleet (the bench) runs
    except RuntimeError as exc:
        pytest.skip(str(exc))
    net.create()
    try:
        yield net
    finally:
        net.remove()


@pytest.fixture(scope="session")
def fleet_master(salt_factories, fleet_net, tmp_path_factory):
    pillar_tree = tmp_path_factory.mktemp("fleet-pillar")
    (pillar_tree / "top.sls").write_text("base: {}\n")
    state_tree = tmp_path_factory.mktemp("fleet-states")
    factory = salt_factories.salt_master_daemon(
        f"{fleet_net.prefix}-master",
        overrides={
            "interface": fleet_net.master_ip,
            # the repository root is a file root: `state.apply kvm` is kvm/init.sls,
            # the orchestration example is docs/examples/orch/upgrade.sls
            "file_roots": {"base": [str(REPO), str(state_tree)]},
            "pillar_roots": {"base": [str(pillar_tree)]},
            "file_ignore_regex": [r"/\.venv/", r"/\.git/", r"/build/", r"/\.notes/"],
            "open_mode": True,
            "auto_accept": True,
        },
    )
    try:
        with factory.started():
            factory.fleet_trees = (pillar_tree, state_tree)
            yield factory
    finally:
        shutil.rmtree(factory.config["root_dir"], ignore_errors=True)


@pytest.fixture(scope="session")
def fleet(fleet_master, fleet_net):
    """A master and :data:`FLEET_SIZE` minions, each minion in its own netns."""
    pillar_tree, state_tree = fleet_master.fleet_trees
    fl = Fleet(fleet_net, fleet_master, pillar_tree, state_tree)
    with contextlib.ExitStack() as stack:
        for i in range(1, FLEET_SIZE + 1):
            netns, _addr = fleet_net.add_host()
            assert fleet_net.ping_master(netns), (
                f"netns {netns} cannot reach the master at {fleet_net.master_ip}"
            )
            minion_id = f"{fleet_net.prefix}-hv{i}"
            factory = fleet_master.salt_minion_daemon(
                minion_id,
                factory_class=fleetlib.NetnsMinion,
                netns=netns,
                overrides=fleet_net.minion_overrides(fleet_master),
            )
            stack.callback(
                shutil.rmtree, factory.config["root_dir"], True
            )  # after it stopped (LIFO)
            stack.enter_context(factory.started())
            fl.minions.append(factory)
            fl.netns[minion_id] = netns
        yield fl
