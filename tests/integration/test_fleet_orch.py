"""The orchestration example (docs/examples/orch/upgrade.sls) on the test fleet:
snapshot the VMs of a role, upgrade, revert them if the upgrade fails."""

import json

import pytest

from tests.support import sandbox

pytestmark = pytest.mark.slow

ORCH = "docs.examples.orch.upgrade"


@pytest.fixture(scope="module")
def role_vm(fleet, conn):
    """A running tiny VM of role ``db`` (on the fleet's first host), removed afterwards."""
    ret = fleet.salt("sys.list_functions", "kvm", tgt=fleet.ids[0], tgt_type="glob")
    missing = {"kvm.snapshot_create", "kvm.snapshot_revert"} - set(ret.data or [])
    if missing:
        pytest.skip(f"execution function {', '.join(sorted(missing))} does not exist yet")
    name = f"{fleet.net.prefix}-db1"
    sandbox.make_vm(conn, name=name, start=True)
    try:
        yield name
    finally:
        sandbox.remove_vm(conn, name)


def _upgrade_sls(fleet, name, vm, fail):
    """An "upgrade" for the test: it stops the VM (a visible change), then fails or not."""
    body = {
        "upgrade-stops-the-vm": {"cmd.run": [{"name": f"virsh -q -c qemu:///system destroy {vm}"}]},
        "upgrade-result": {
            ("test.fail_without_changes" if fail else "test.succeed_without_changes"): [
                {"require": [{"cmd": "upgrade-stops-the-vm"}]}
            ]
        },
    }
    (fleet.state_tree / f"{name}.sls").write_text(json.dumps(body))
    return name


def _orchestrate(fleet, vm, sls, snapshot):
    pillar = {
        "upgrade": {
            "vms": vm,
            "hosts": f"L@{fleet.ids[0]}",
            "guests": fleet.ids[0],
            "guests_tgt_type": "list",
            "sls": sls,
            "snapshot": snapshot,
            "batch": "100%",
        }
    }
    ret = fleet.run("state.orchestrate", ORCH, f"pillar={json.dumps(pillar)}", "--out=json")
    data = ret.data
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    states = next(iter(data.values())) if isinstance(data, dict) and len(data) == 1 else data
    by_id = {key.split("_|-")[1]: value for key, value in states.items()}
    return ret, by_id


def test_a_failed_upgrade_is_reverted(fleet, role_vm, conn):
    sls = _upgrade_sls(fleet, "kvt_upgrade_fails", role_vm, fail=True)
    ret, states = _orchestrate(fleet, role_vm, sls, "pre-upgrade-1")
    assert ret.returncode != 0
    assert states["snapshot-before-upgrade"]["result"] is True, states["snapshot-before-upgrade"]
    assert states["upgrade"]["result"] is False
    assert states["revert-on-failure"]["result"] is True, states["revert-on-failure"]
    dom = conn.lookupByName(role_vm)
    assert "pre-upgrade-1" in dom.snapshotListNames(0)
    assert dom.snapshotCurrent(0).getName() == "pre-upgrade-1"
    assert dom.isActive()  # the upgrade stopped it; the revert brought it back, running


def test_a_good_upgrade_is_not_reverted(fleet, role_vm, conn):
    sls = _upgrade_sls(fleet, "kvt_upgrade_works", role_vm, fail=False)
    ret, states = _orchestrate(fleet, role_vm, sls, "pre-upgrade-2")
    assert ret.returncode == 0, ret
    assert states["upgrade"]["result"] is True
    assert not states["revert-on-failure"].get("changes")
    dom = conn.lookupByName(role_vm)
    assert "pre-upgrade-2" in dom.snapshotListNames(0)
    assert not dom.isActive()  # the upgrade's own change stays
