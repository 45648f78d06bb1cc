"""The execution functions the ``kvm`` runner calls on each host
(``kvm.host_report``, ``kvm.snapshot_vms``, ``kvm.revert_vms``), through
Salt's loader against the real libvirtd."""

import pytest
from salt.exceptions import SaltInvocationError


def _need(kvm, *names):
    missing = [n for n in names if not hasattr(kvm, n)]
    if missing:
        pytest.skip(f"kvm.{', kvm.'.join(missing)} does not exist yet")


def test_host_report_sees_pools_vms_and_snapshots(kvm, conn, dir_pool, tiny_vm):
    pool_name, _path = dir_pool
    dom, _disk = tiny_vm()
    dom.snapshotCreateXML("<domainsnapshot><name>first</name></domainsnapshot>", 0)
    report = kvm.host_report()
    assert set(report) == {"bridges", "networks", "pools", "vms"}
    pool = {p["name"]: p for p in report["pools"]}[pool_name]
    assert pool["type"] == "dir" and pool["active"] is True
    assert pool["volumes"] == 0 and pool["capacity"] > 0
    assert 0 <= pool["used_pct"] <= 100
    vm = {v["name"]: v for v in report["vms"]}[dom.name()]
    assert vm["state"] == "shutoff"
    assert vm["snapshots"] == 1 and vm["oldest_snapshot"] == "first"
    assert 0 <= vm["oldest_snapshot_age"] < 600
    assert all(set(n) == {"name", "active", "autostart", "bridge"} for n in report["networks"])
    assert all(set(b) == {"name", "state", "ports"} for b in report["bridges"])


def test_snapshot_vms_then_revert_vms(kvm, conn, tiny_vm):
    _need(kvm, "snapshot_create", "snapshot_revert")
    dom, _disk = tiny_vm()
    other, _ = tiny_vm()
    ret = kvm.snapshot_vms(dom.name(), "fleet-1", memory=False)
    assert ret["result"] is True
    assert list(ret["vms"]) == [dom.name()]  # only the matching VM
    assert ret["vms"][dom.name()]["changed"] is True
    assert conn.lookupByName(dom.name()).snapshotListNames(0) == ["fleet-1"]
    assert conn.lookupByName(other.name()).snapshotListNames(0) == []
    # a re-run leaves the taken one alone
    again = kvm.snapshot_vms([dom.name(), other.name()], "fleet-1", memory=False)
    assert again["vms"][dom.name()] == {
        "result": True,
        "changed": False,
        "comment": "snapshot 'fleet-1' exists already",
    }
    assert again["vms"][other.name()]["changed"] is True
    ret = kvm.revert_vms(f"{dom.name()},{other.name()}", "fleet-1")
    assert ret["result"] is True and sorted(ret["vms"]) == sorted([dom.name(), other.name()])
    bad = kvm.revert_vms(dom.name(), "no-such")
    assert bad["result"] is False and "no-such" in bad["vms"][dom.name()]["comment"]


def test_vms_is_required(kvm):
    with pytest.raises(SaltInvocationError, match="vms: is required"):
        kvm.snapshot_vms("", "x")
    with pytest.raises(SaltInvocationError, match="name: is required"):
        kvm.revert_vms("*", None)
