"""Snapshot logic without libvirtd: XML models (golden files from a real libvirt 9.0),
the kind decision and its refusals, pruning, and the description of a snapshot."""

import pathlib
import time

import pytest

from salt_kvm import snapshot
from salt_kvm.errors import KvmError, Refused
from salt_kvm.xml import snapshot as xsnap
from salt_kvm.xml.domain import Domain

GOLDEN = pathlib.Path(__file__).parent / "golden" / "snapshot"


def golden(name):
    return (GOLDEN / name).read_text()


class FakeEntry(snapshot.Entry):
    def __init__(self, xml, current=False):
        super().__init__(None, xsnap.Snapshot(xml), current)


def entries(*names):
    return {e.name: e for e in (FakeEntry(golden(f"{n}.xml")) for n in names)}


def tiny_domain(fmt="qcow2", source="/srv/vms/web01/disk.qcow2", agent=None, cdrom=True):
    dom = Domain()
    dom.name = "web01"
    devices = dom.sub("devices")
    disk = devices.makeelement("disk", {"type": "file", "device": "disk"})
    devices.append(disk)
    disk.append(disk.makeelement("driver", {"name": "qemu", "type": fmt}))
    disk.append(disk.makeelement("source", {"file": source}))
    disk.append(disk.makeelement("target", {"dev": "vda", "bus": "virtio"}))
    if cdrom:
        cd = devices.makeelement("disk", {"type": "file", "device": "cdrom"})
        devices.append(cd)
        cd.append(cd.makeelement("source", {"file": "/srv/iso/x.iso"}))
        cd.append(cd.makeelement("target", {"dev": "sda", "bus": "sata"}))
        cd.append(cd.makeelement("readonly", {}))
    if agent is not None:
        chan = devices.makeelement("channel", {"type": "unix"})
        devices.append(chan)
        attrs = {"type": "virtio", "name": "org.qemu.guest_agent.0"}
        if agent != "unknown":
            attrs["state"] = agent
        chan.append(chan.makeelement("target", attrs))
    return Domain(dom.to_xml())


# --- XML models ----------------------------------------------------------------


def test_parse_internal_snapshot():
    snap = xsnap.Snapshot(golden("int1.xml"))
    assert snap.name == "int1" and snap.description == "before the upgrade"
    assert snap.state == "running" and snap.created == 1700000000 and snap.parent is None
    assert snap.kind == "internal" and snap.has_memory and snap.memory_snapshot == "internal"
    assert [(d.name, d.snapshot) for d in snap.disks] == [("vda", "internal")]
    assert snap.domain.disk("vda").source == "/srv/vms/web01/disk.qcow2"


def test_parse_external_snapshot_with_memory():
    snap = xsnap.Snapshot(golden("ext1.xml"))
    assert snap.kind == "external" and snap.has_memory and snap.parent == "int1"
    assert snap.memory_file == "/srv/vms/web01/web01.ext1.mem"
    assert [(d.name, d.file, d.format) for d in snap.external_disks] == [
        ("vda", "/srv/vms/web01/web01-vda.ext1.qcow2", "qcow2")
    ]
    assert snap.inactive_domain.disk("vda").source == "/srv/vms/web01/disk.qcow2"


def test_describe_reports_kind_memory_parent_and_files():
    ents = entries("int1", "ext1")
    info = ents["ext1"].describe(children=[])
    assert info["created"] == "2023-11-14T22:13:20Z"
    assert info["kind"] == "external" and info["memory"] is True and info["parent"] == "int1"
    assert info["memory_file"] == "/srv/vms/web01/web01.ext1.mem"
    assert info["disks"] == [
        {
            "disk": "vda",
            "kind": "external",
            "file": "/srv/vms/web01/web01-vda.ext1.qcow2",
            "base": "/srv/vms/web01/disk.qcow2",
        }
    ]
    assert ents["int1"].describe(["ext1"])["disks"] == [
        {"disk": "vda", "kind": "internal", "file": "/srv/vms/web01/disk.qcow2"}
    ]
    assert snapshot._children(ents) == {"int1": ["ext1"], "ext1": []}


def test_build_round_trips():
    xml = xsnap.build(
        "s1",
        "a <test>",
        memory="external",
        memory_file="/srv/web01.s1.mem",
        disks=[("vda", "external", "/srv/web01-vda.s1.qcow2", "qcow2"), ("sda", "no")],
    )
    snap = xsnap.Snapshot(xml)
    assert snap.name == "s1" and snap.description == "a <test>"
    assert snap.memory_snapshot == "external" and snap.memory_file == "/srv/web01.s1.mem"
    assert [(d.name, d.snapshot, d.file, d.format) for d in snap.disks] == [
        ("vda", "external", "/srv/web01-vda.s1.qcow2", "qcow2"),
        ("sda", "no", None, None),
    ]
    assert xsnap.Snapshot(xsnap.build("s2", memory="internal")).to_xml(pretty=False) == (
        '<domainsnapshot><name>s2</name><memory snapshot="internal"/></domainsnapshot>'
    )


def test_domain_disks_backing_chain_and_repoint():
    dom = Domain(golden("domain-running-ext1.xml"))
    vda = dom.disk("vda")
    assert vda.source == "/srv/vms/web01/web01-vda.ext1.qcow2"
    assert vda.backing_chain == [{"file": "/srv/vms/web01/disk.qcow2", "format": "qcow2"}]
    vda.set_image("/srv/vms/web01/disk.qcow2", "qcow2")
    again = Domain(dom.to_xml())
    assert (
        again.disk("vda").source == "/srv/vms/web01/disk.qcow2"
        and again.disk("vda").backing_chain == []
    )


def test_snapshot_metadata_repoint_for_redefine():
    snap = xsnap.Snapshot(golden("ext1.xml"))
    assert snap.set_domain_disk_image("vda", "/srv/vms/web01/merged.qcow2", "qcow2")
    again = xsnap.Snapshot(snap.to_xml())
    assert again.domain.disk("vda").source == "/srv/vms/web01/merged.qcow2"
    assert again.inactive_domain.disk("vda").source == "/srv/vms/web01/merged.qcow2"


# --- the kind of snapshot, and refusals ------------------------------------------


@pytest.mark.parametrize(
    "running,kwargs,kind,memory",
    [
        (True, {}, "internal", True),
        (True, {"memory": False}, "external", False),
        (True, {"disk_only": True}, "external", False),
        (True, {"external": True}, "external", True),
        (True, {"external": True, "disk_only": True}, "external", False),
        (False, {}, "internal", False),
        (False, {"external": True}, "external", False),
        (False, {"quiesce": True}, "internal", False),  # a stopped VM is already quiet
    ],
)
def test_plan_create_kinds(running, kwargs, kind, memory):
    plan = snapshot.plan_create("web01", running, tiny_domain(), {}, name="s1", **kwargs)
    assert plan["kind"] == kind and plan["memory"] is memory
    if kind == "external":
        assert plan["overlays"] == {
            "vda": "/srv/vms/web01/web01-vda.s1.qcow2"
        }  # the cdrom is never snapshotted
        assert plan["memory_file"] == ("/srv/vms/web01/web01.s1.mem" if memory else None)
    else:
        assert plan["overlays"] == {}


def test_quiesce_needs_a_connected_agent():
    with pytest.raises(KvmError, match="has no guest agent channel"):
        snapshot.plan_create("web01", True, tiny_domain(), {}, quiesce=True)
    with pytest.raises(KvmError, match="does not answer"):
        snapshot.plan_create("web01", True, tiny_domain(agent="disconnected"), {}, quiesce=True)
    plan = snapshot.plan_create(
        "web01", True, tiny_domain(agent="connected"), {}, quiesce=True, name="q"
    )
    assert plan["kind"] == "external" and plan["quiesce"] and plan["disk_only"]


def test_internal_on_raw_or_on_an_overlay_is_refused():
    with pytest.raises(
        KvmError, match=r"internal snapshots need qcow2 disks: disk vda of VM 'web01' is raw"
    ):
        snapshot.plan_create(
            "web01", False, tiny_domain(fmt="raw", source="/srv/vms/web01/disk.img"), {}
        )
    on_overlay = tiny_domain(source="/srv/vms/web01/web01-vda.ext1.qcow2")
    with pytest.raises(Refused, match="overlay of external snapshot 'ext1'"):
        snapshot.plan_create("web01", True, on_overlay, entries("int1", "ext1"))
    # external on top is fine
    assert (
        snapshot.plan_create(
            "web01", True, on_overlay, entries("int1", "ext1"), memory=False, name="e2"
        )["kind"]
        == "external"
    )


def test_revert_to_internal_under_external_is_refused():
    ents = entries("int1", "ext1")
    with pytest.raises(Refused, match="external snapshot\\(s\\) 'ext1' are built on"):
        snapshot._check_internal_revert("web01", ents["int1"], ents)
    snapshot._check_internal_revert("web01", ents["int1"], entries("int1"))


# --- pruning -------------------------------------------------------------------


def _named(name, created):
    return FakeEntry(
        xsnap.build(name).replace(
            "</domainsnapshot>", f"<creationTime>{created}</creationTime></domainsnapshot>"
        )
    )


def test_prune_candidates():
    ents = {
        e.name: e
        for e in (
            _named(n, t)
            for n, t in [
                ("hand", 1),
                ("auto-a", 10),
                ("auto-b", 20),
                ("auto-c", 30),
                ("auto-d", 40),
            ]
        )
    }
    assert snapshot._prune_candidates(ents, keep=2, now=100) == ["auto-a", "auto-b"]
    assert snapshot._prune_candidates(ents, keep=2, now=100, extra=1) == [
        "auto-a",
        "auto-b",
        "auto-c",
    ]
    assert snapshot._prune_candidates(ents, keep=0, now=100, older_than=75) == ["auto-a", "auto-b"]
    assert snapshot._prune_candidates(ents, keep=1, prefix="nightly-", now=100) == []
    assert snapshot._prune_candidates(ents, keep=10, now=100) == []


def test_formula_renders_one_retention_state_per_vm():
    from salt_kvm import formula  # pylint: disable=import-outside-toplevel

    out = formula.render(
        "snapshots", {"snapshots": {"web01": {"every": "1d", "keep": 7, "memory": True}}}
    )
    assert out == {
        "kvm-snapshots-web01": {
            "kvm.snapshots_retained": [
                {"name": "web01"},
                {"every": 86400.0},
                {"keep": 7},
                {"memory": True},
            ]
        }
    }
    # and the state accepts exactly the pillar's (normalised) keys
    from salt_kvm import schema  # pylint: disable=import-outside-toplevel

    assert schema.validate_args(
        schema.RETENTION, "web01", {"every": 86400.0, "keep": 7, "memory": True}
    ) == {
        "every": 86400.0,
        "keep": 7,
        "memory": True,
    }


# --- the states' resources (the host's snapshots faked) -----------------------


class Snaps(dict):
    """``{name: created}`` of the fake VM, with the calls made and the names that fail."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.undeletable = set()


@pytest.fixture
def fake_vm(monkeypatch):
    """VM web01, shut off, with the snapshots in the returned :class:`Snaps`."""
    monkeypatch.setenv("KVT_STRICT_CONTRACT", "1")
    snaps = Snaps()

    def create(session, vm, *, name=None, description=None, **options):
        snaps.calls.append(("create", name, description, options))
        snaps[name] = time.time()
        return {"name": name}

    def delete(session, vm, name, **options):
        snaps.calls.append(("delete", name))
        if name in snaps.undeletable:
            raise KvmError(f"cannot delete {name}")
        del snaps[name]

    monkeypatch.setattr(snapshot, "_domain", lambda session, vm: vm)
    monkeypatch.setattr(snapshot, "_is_active", lambda dom: False)
    monkeypatch.setattr(snapshot, "_xml", lambda dom, inactive=False: tiny_domain())
    monkeypatch.setattr(
        snapshot, "_load", lambda session, dom: {n: _named(n, int(t)) for n, t in snaps.items()}
    )
    monkeypatch.setattr(snapshot, "_invalidate", lambda session: None)
    monkeypatch.setattr(snapshot, "snapshot_create", create)
    monkeypatch.setattr(snapshot, "snapshot_delete", delete)
    return snaps


def test_retention_takes_the_snapshot_it_planned_and_prunes(fake_vm):
    now = time.time()
    fake_vm.update({"hand": now - 900, "auto-old": now - 800, "auto-mid": now - 700})
    predicted = snapshot.snapshots_retained(None, "web01", test=True, every=600, keep=2)
    assert predicted["result"] is None, predicted
    taken = predicted["changes"]["taken"]["new"]
    assert taken.startswith("auto-") and predicted["changes"]["deleted"]["old"] == ["auto-old"]
    assert predicted["comment"] == (
        f"snapshots 'auto-*' of VM 'web01': would take {taken}; would delete auto-old"
    )
    ret = snapshot.snapshots_retained(None, "web01", every=600, keep=2)
    assert ret["result"] is True, ret
    assert ret["changes"]["taken"]["new"] in fake_vm and "auto-old" not in fake_vm
    assert set(fake_vm) == {"hand", "auto-mid", ret["changes"]["taken"]["new"]}
    assert ret["comment"].endswith(f"took {ret['changes']['taken']['new']}; deleted auto-old")
    kind, name, description, options = fake_vm.calls[0]
    assert (kind, name) == ("create", ret["changes"]["taken"]["new"])
    assert description == "taken by salt-kvm snapshots_retained (every 10m, keep 2)"
    assert options == {"memory": True, "disk_only": False, "external": False, "quiesce": False}
    # nothing due: no change
    again = snapshot.snapshots_retained(None, "web01", every=600, keep=2)
    assert again["result"] is True and again["changes"] == {}, again


def test_retention_restore_deletes_the_snapshot_apply_took(fake_vm):
    # a prune that fails after the new snapshot was taken: the new one is deleted again
    fake_vm.update({"auto-a": time.time() - 7200})
    fake_vm.undeletable.add("auto-a")
    ret = snapshot.snapshots_retained(None, "web01", every=600, keep=1)
    assert ret["result"] is False, ret
    taken = fake_vm.calls[0][1]
    assert ret["comment"] == (
        "snapshots 'auto-*' of VM 'web01': cannot delete auto-a; "
        f"restored by deleting the new snapshot '{taken}'"
    )
    assert set(fake_vm) == {"auto-a"} and fake_vm.calls[-1] == ("delete", taken)


def test_snapshot_present_takes_it_once(fake_vm):
    ret = snapshot.snapshot_present(None, "web01", "s1", test=True)
    assert ret["result"] is None
    assert ret["changes"] == {
        "snapshot": {"old": None, "new": {"name": "s1", "kind": "internal", "memory": False}}
    }
    assert ret["comment"] == "snapshot 's1' of VM 'web01' would be taken (internal)"
    ret = snapshot.snapshot_present(None, "web01", "s1", description="before")
    assert ret["result"] is True and ret["comment"].endswith("was taken (internal)"), ret
    assert fake_vm.calls[0][:3] == ("create", "s1", "before")
    ret = snapshot.snapshot_present(None, "web01", "s1")
    assert ret["result"] is True and ret["changes"] == {}
