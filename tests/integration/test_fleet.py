"""A fleet on one machine: a real salt-master and 3 minions, each in its own
network namespace (a separate "host"), each with its own pillar.

``salt '*' state.apply kvm`` configures each host as its pillar says; the
second run changes nothing anywhere; ``test=True`` reports the pending changes
per host; a host with a bad pillar fails alone, naming the path, while the
others converge. Then the ``kvm`` runner: ``kvm.report`` (tables and JSON,
drift), ``kvm.snapshot`` and ``kvm.revert`` in batches.

libvirtd is shared by all minions here (it lives in the root namespace), so
every libvirt object has a per-host name; kernel bridges are per netns.
"""

import json
import os

import pytest

from tests.conftest import REPO
from tests.support import sandbox
from tests.support.fleet import free_subnets, remove_objects
from tests.support.saltcall import changed, state_results

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


def _need_states(*names):
    text = (REPO / "_states" / "kvm.py").read_text(encoding="utf-8")
    missing = [n for n in names if f"\ndef {n}(" not in text]
    if missing:
        pytest.skip(f"state kvm.{', kvm.'.join(missing)} does not exist yet")


def host_pillar(fleet, minion_id, i, subnet):
    """Host i's pillar: its own bridge (in its netns), pool, volumes, network (on a free
    documentation ``subnet``) and snapshot policy."""

    def name(kind):
        return fleet.name(minion_id, kind)

    pool = name("p")
    volumes = {
        f"disk{j}.qcow2": {"size": "16M", "format": "qcow2"} for j in range(1, i)
    }  # 0, 1, 2 volumes
    pillar = {
        "bridges": {
            f"kvt-br{i}": {
                "stp": False,
                "forward_delay": 0,
                "addresses": [f"192.0.2.{10 + i}/24"],
                "persist": "none",
            }
        },
        "pools": {
            pool: {
                "type": "dir",
                "target": os.path.join(sandbox.FILES_ROOT, pool),
                "autostart": i != 2,
                "volumes": volumes,
            }
        },
        "snapshots": {
            name("vm"): {"every": "1d", "keep": i, "memory": False, "prefix": f"auto{i}-"}
        },
    }
    if i != 2:  # host 2 has no libvirt network of its own
        pillar["networks"] = {
            name("net"): {
                "mode": "isolated",
                "bridge": f"{fleet.net.prefix}n{i}",
                "address": f"{subnet[1]}/{subnet.prefixlen}",
                "autostart": False,
            }
        }
    return pillar


@pytest.fixture(scope="module")
def hosts(fleet, conn):
    """Per-host pillar written, a stopped tiny VM per host for its snapshot policy."""
    _need_states(
        "bridge_present", "network_present", "pool_present", "volume_present", "snapshots_retained"
    )
    specs = {}
    subnets = free_subnets(len(fleet.ids), exclude=[f"{fleet.net.master_ip}/25"])
    try:
        for i, minion_id in enumerate(fleet.ids, start=1):
            sandbox.make_vm(conn, name=fleet.name(minion_id, "vm"))
            specs[minion_id] = host_pillar(fleet, minion_id, i, subnets[i - 1])
            fleet.set_pillar(minion_id, specs[minion_id])
        yield specs
    finally:
        fleet.clear_pillar()
        remove_objects(fleet.net.prefix)


def apply(fleet, *args, tgt=None):
    """``salt '*' state.apply kvm ARGS`` (this master serves only the fleet), or one host."""
    if tgt is None:
        ret = fleet.salt("state.apply", "kvm", *args, tgt="*", tgt_type="glob")
        assert isinstance(ret.data, dict) and set(ret.data) == set(fleet.ids), ret
    else:
        ret = fleet.salt("state.apply", "kvm", *args, tgt=tgt, tgt_type="list")
    return ret


def _bridge_in_netns(netns, name):
    from pyroute2 import NetNS  # pylint: disable=import-outside-toplevel

    with NetNS(netns) as ns:
        idx = ns.link_lookup(ifname=name)
        if not idx:
            return None
        return sorted(
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ns.get_addr(index=idx[0], family=2)
        )


def test_each_minion_is_a_host_of_its_own(fleet):
    ret = fleet.salt("grains.get", "ipv4")
    for minion_id, (netns, _veth, address) in zip(fleet.ids, fleet.net.hosts):
        assert fleet.netns[minion_id] == netns
        assert address in ret.data[minion_id]
        assert fleet.net.master_ip not in ret.data[minion_id]


def test_grain_targeting(fleet):
    ret = fleet.salt("grains.get", "kvm")
    hypervisor = "kvm" if os.path.exists("/dev/kvm") else "qemu"
    for minion_id in fleet.ids:
        assert ret.data[minion_id]["hypervisor"] == hypervisor
        assert ret.data[minion_id]["libvirt_version"]
    ret = fleet.salt("test.ping", tgt=f"kvm:hypervisor:{hypervisor}", tgt_type="grain")
    assert set(fleet.ids) <= set(ret.data)
    ret = fleet.salt(
        "test.ping",
        tgt=f"G@kvm:hypervisor:{hypervisor} and L@{','.join(fleet.ids)}",
        tgt_type="compound",
    )
    assert set(ret.data) == set(fleet.ids)


def test_test_mode_reports_pending_changes_per_host(fleet, hosts, conn):
    ret = apply(fleet, "test=True")
    for i, minion_id in enumerate(fleet.ids, start=1):
        results = state_results(ret.data[minion_id])
        assert results, ret.data[minion_id]
        assert all(r["result"] is None for r in results.values()), {
            k: (r["result"], r["comment"]) for k, r in results.items() if r["result"] is not None
        }
        pool = fleet.name(minion_id, "p")
        assert results[f"kvm-pool-{pool}"]["changes"]
        assert results[f"kvm-bridge-kvt-br{i}"]["changes"]
        # only its own objects
        others = [fleet.name(o, "p") for o in fleet.ids if o != minion_id]
        assert not any(o in sid for sid in results for o in others)
        assert len([s for s in results if s.startswith(f"kvm-volume-{pool}-")]) == i - 1
        assert (f"kvm-network-{fleet.name(minion_id, 'net')}" in results) == (i != 2)
    # nothing changed anywhere
    assert not [p for p in conn.listAllStoragePools(0) if p.name().startswith(fleet.net.prefix)]
    assert not [n for n in conn.listAllNetworks(0) if n.name().startswith(fleet.net.prefix)]
    for i, minion_id in enumerate(fleet.ids, start=1):
        assert _bridge_in_netns(fleet.netns[minion_id], f"kvt-br{i}") is None


def test_apply_configures_each_host_as_its_pillar_says(fleet, hosts, conn):
    ret = apply(fleet)
    assert ret.returncode == 0, ret
    for i, minion_id in enumerate(fleet.ids, start=1):
        results = state_results(ret.data[minion_id])
        assert all(r["result"] is True for r in results.values()), {
            k: r["comment"] for k, r in results.items() if r["result"] is not True
        }
        # bridge in this host's own netns, with this host's address; not in the others'
        assert _bridge_in_netns(fleet.netns[minion_id], f"kvt-br{i}") == [f"192.0.2.{10 + i}/24"]
        for other in fleet.ids:
            if other != minion_id:
                assert _bridge_in_netns(fleet.netns[other], f"kvt-br{i}") is None
        pool = conn.storagePoolLookupByName(fleet.name(minion_id, "p"))
        assert pool.isActive()
        assert bool(pool.autostart()) == (i != 2)
        pool.refresh(0)
        assert sorted(pool.listVolumes()) == [f"disk{j}.qcow2" for j in range(1, i)]
        for vol in pool.listAllVolumes(0):
            assert vol.info()[1] == 16 * MiB
        nets = {n.name() for n in conn.listAllNetworks(0)}
        assert (fleet.name(minion_id, "net") in nets) == (i != 2)
        dom = conn.lookupByName(fleet.name(minion_id, "vm"))
        assert [s for s in dom.snapshotListNames(0) if s.startswith(f"auto{i}-")]


def test_second_apply_changes_nothing_anywhere(fleet, hosts):
    ret = apply(fleet)
    assert ret.returncode == 0, ret
    for minion_id in fleet.ids:
        assert changed(ret.data[minion_id]) == {}, minion_id
        assert all(r["result"] is True for r in state_results(ret.data[minion_id]).values())


def test_a_bad_pillar_fails_alone_and_the_others_converge(fleet, hosts, conn):
    first, bad, third = fleet.ids
    pool1, pool2 = fleet.name(first, "p"), fleet.name(bad, "p")
    good = json.loads(json.dumps(hosts[first]))
    good["pools"][pool1]["volumes"]["extra.qcow2"] = {"size": "8M"}
    broken = json.loads(json.dumps(hosts[bad]))
    broken["pools"][pool2]["volumes"]["bad.qcow2"] = {"size": "20X"}
    fleet.set_pillar(first, good)
    fleet.set_pillar(bad, broken)
    try:
        ret = apply(fleet)
        assert ret.returncode != 0
        text = json.dumps(ret.data[bad])
        assert f"kvm:pools:{pool2}:volumes:bad.qcow2:size: '20X' is not a size" in text, text
        assert "bad.qcow2" not in conn.storagePoolLookupByName(pool2).listVolumes()
        # the others converge: the first gets its new volume, the third stays as it is
        results = state_results(ret.data[first])
        assert all(r["result"] is True for r in results.values())
        assert changed(ret.data[first]) and "extra.qcow2" in json.dumps(changed(ret.data[first]))
        conn.storagePoolLookupByName(pool1).refresh(0)
        assert "extra.qcow2" in conn.storagePoolLookupByName(pool1).listVolumes()
        assert all(r["result"] is True for r in state_results(ret.data[third]).values())
        assert changed(ret.data[third]) == {}
    finally:
        good["pools"][pool1]["volumes"]["extra.qcow2"] = {"size": "8M", "absent": True}
        fleet.set_pillar(first, good)
        fleet.set_pillar(bad, hosts[bad])
        apply(fleet, tgt=first)
        hosts[first] = good


# --- the kvm runner ------------------------------------------------------------


def test_report_gathers_every_host(fleet, hosts, conn):
    ret = fleet.run("kvm.report", ",".join(fleet.ids), "tgt_type=list", "--out=json")
    assert ret.returncode == 0, ret
    assert ret.data["retcode"] == 0
    assert ret.data["summary"] == {
        "hosts": 3,
        "in_line": sorted(fleet.ids),
        "drifted": [],
        "failed": [],
    }
    data = ret.data["hosts"]
    assert set(data) == set(fleet.ids)
    for i, minion_id in enumerate(fleet.ids, start=1):
        entry = data[minion_id]
        assert entry["error"] is None
        rep = entry["report"]
        assert [b["name"] for b in rep["bridges"]] == [f"kvt-br{i}"]  # its own netns only
        pools = {p["name"]: p for p in rep["pools"]}
        pool = pools[fleet.name(minion_id, "p")]
        assert pool["type"] == "dir" and pool["active"]
        assert pool["volumes"] == i - 1
        assert pool["capacity"] > 0 and 0 <= pool["used_pct"] <= 100
        nets = {n["name"] for n in rep["networks"]}
        assert (fleet.name(minion_id, "net") in nets) == (i != 2)
        vms = {v["name"]: v for v in rep["vms"]}
        vm = vms[fleet.name(minion_id, "vm")]
        assert vm["snapshots"] == 1 and vm["oldest_snapshot"].startswith(f"auto{i}-")
        assert 0 <= vm["oldest_snapshot_age"] < 3600
        assert entry["drift"] == {"pending": {}, "errors": []}


def test_report_shows_drift_and_errors_per_host(fleet, hosts):
    first, second, third = fleet.ids
    drifted = json.loads(json.dumps(hosts[third]))
    pool3 = fleet.name(third, "p")
    drifted["pools"][pool3]["volumes"]["new.qcow2"] = {"size": "8M"}
    broken = json.loads(json.dumps(hosts[second]))
    broken["bridges"]["kvt-br2"]["mtu"] = 10
    fleet.set_pillar(third, drifted)
    fleet.set_pillar(second, broken)
    try:
        ret = fleet.run("kvm.report", ",".join(fleet.ids), "tgt_type=list", "--out=json")
        assert ret.returncode != 0  # a host whose pillar is broken fails the report
        assert ret.data["summary"]["failed"] == [second] and ret.data["summary"]["drifted"] == [
            third
        ]
        data = ret.data["hosts"]
        assert data[first]["drift"] == {"pending": {}, "errors": []}
        assert list(data[third]["drift"]["pending"]) == [f"kvm-volume-{pool3}-new.qcow2"]
        assert "kvm:bridges:kvt-br2:mtu" in " ".join(data[second]["drift"]["errors"])
        # the table, as an operator sees it
        ret = fleet.run("kvm.report", ",".join(fleet.ids), "tgt_type=list", "--out=nested")
        text = ret.stdout
        for minion_id in fleet.ids:
            assert f"\n{minion_id}\n" in f"\n{text}"
        assert "pool" in text and "used%" in text and "snapshots" in text, text
        assert f"kvm-volume-{pool3}-new.qcow2" in text
        assert "drift: ERROR" in text
        assert "3 host(s): 1 in line with their pillar, 1 drifted, 1 failed" in text
    finally:
        fleet.set_pillar(third, hosts[third])
        fleet.set_pillar(second, hosts[second])


@pytest.fixture
def running_vms(fleet, hosts, conn):
    """A running tiny VM per host (``<prefix>-web<i>``), removed afterwards."""
    names = []
    try:
        for minion_id in fleet.ids:
            name = fleet.name(minion_id, "web")
            sandbox.make_vm(conn, name=name, start=True)
            names.append(name)
        yield names
    finally:
        for name in names:
            sandbox.remove_vm(conn, name)


def _need_exec(fleet, *funcs):
    ret = fleet.salt("sys.list_functions", "kvm", tgt=fleet.ids[0], tgt_type="glob")
    have = set(ret.data or [])
    missing = [f for f in funcs if f not in have]
    if missing:
        pytest.skip(f"execution function {', '.join(missing)} does not exist yet")


def test_snapshot_and_revert_across_the_fleet_in_batches(fleet, running_vms, conn):
    """One host per batch (34% of 3). Here every host sees every VM (one shared
    libvirtd): the first host to run takes each snapshot, the others find it
    taken and leave it (as a re-run after a partial failure would)."""
    _need_exec(fleet, "kvm.snapshot_create", "kvm.snapshot_revert")
    pattern = f"{fleet.net.prefix}-web*"
    tgt = ",".join(fleet.ids)
    ret = fleet.run(
        "kvm.snapshot",
        f"tgt={tgt}",
        "tgt_type=list",
        f"vms={pattern}",
        "name=before",
        "batch=34%",
        "--out=json",
    )
    assert ret.returncode == 0, ret
    data = ret.data
    assert data["result"] is True
    assert set(data["hosts"]) == set(fleet.ids)
    assert all(h["result"] and h["vms"] == len(running_vms) for h in data["hosts"].values())
    for vm in running_vms:
        entries = [data["vms"][f"{m}/{vm}"] for m in fleet.ids]
        assert all(e["result"] is True for e in entries)
        assert sum(e["changed"] for e in entries) == 1, entries
        assert conn.lookupByName(vm).snapshotListNames(0).count("before") == 1

    for vm in running_vms:
        conn.lookupByName(vm).destroy()
    ret = fleet.run(
        "kvm.revert",
        f"tgt={fleet.ids[0]}",
        "tgt_type=list",
        f"vms={pattern}",
        "name=before",
        "--out=json",
    )
    assert ret.returncode == 0, ret
    assert ret.data["result"] is True
    assert sorted(ret.data["vms"]) == sorted(f"{fleet.ids[0]}/{vm}" for vm in running_vms)
    for vm in running_vms:
        assert conn.lookupByName(vm).isActive()  # a snapshot of a running VM reverts to running


def test_snapshot_reports_a_failing_vm(fleet, running_vms, conn):
    _need_exec(fleet, "kvm.snapshot_create")
    ret = fleet.run(
        "kvm.revert",
        f"tgt={fleet.ids[0]}",
        "tgt_type=list",
        f"vms={running_vms[0]}",
        "name=no-such-snapshot",
        "--out=json",
    )
    assert ret.returncode != 0
    assert ret.data["result"] is False
    entry = ret.data["vms"][f"{fleet.ids[0]}/{running_vms[0]}"]
    assert entry["result"] is False and "no-such-snapshot" in entry["comment"]


def test_runner_refuses_without_vms(fleet):
    ret = fleet.run("kvm.snapshot", f"tgt={fleet.ids[0]}", "name=x", "--out=json")
    assert ret.returncode != 0
    assert "vms: is required" in json.dumps(ret.data)
