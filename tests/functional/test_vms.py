"""VMs declared like the rest of the host, against the real libvirtd.

Tiny VMs without an OS (they idle in the firmware) serve where only libvirt's
view matters: the definition, its in-place edits, the run state, the guards
on volumes. What a guest sees is for the real-guest tests.
"""

import os

import pytest
from lxml import etree
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support import sandbox
from tests.support.images import reads, write_pattern

M = 1024**2


@pytest.fixture
def pool(conn, names):
    """A running dir pool with volumes ``a.qcow2`` and ``b.qcow2``: ``(name, path)``."""
    name = names("p-")
    _obj, path = sandbox.make_dir_pool(conn, name=name)
    for vol in ("a.qcow2", "b.qcow2"):
        sandbox.qemu_img("create", "-q", "-f", "qcow2", os.path.join(path, vol), "32M")
    conn.storagePoolLookupByName(name).refresh(0)
    return name, path


def _spec(pool, **extra):
    """State arguments (the pillar's ``state`` is ``run_state``: Salt reserves ``state``)."""
    spec = {
        "memory": "64M",
        "vcpus": 1,
        "disks": [{"pool": pool, "volume": "a.qcow2"}],
        "console": {"log": True},
    }
    spec.update(extra)
    if "state" in spec:
        spec["run_state"] = spec.pop("state")
    return spec


def test_vm_present_defines_starts_and_converges(kvm_state, kvm, pool, vm_name, testmode):
    pname, path = pool
    spec = _spec(pname)
    predicted = kvm_state.vm_present(vm_name, test=True, **spec) if testmode else None
    if testmode:
        assert predicted["result"] is None and "vm" in predicted["changes"], predicted
        with pytest.raises(CommandExecutionError, match="does not exist"):
            kvm.vm_show(vm_name)
        return
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True, ret["comment"]
    assert (
        ret["changes"]["state"] == {"old": None, "new": "running"}
        and "was defined and started" in ret["comment"]
    )
    shown = kvm.vm_show(vm_name)
    assert shown["state"] == "running" and shown["memory"] == 64 * M and shown["vcpus"] == 1
    assert shown["disks"] == [
        {
            "target": "vda",
            "device": "disk",
            "path": os.path.join(path, "a.qcow2"),
            "pool": pname,
            "volume": "a.qcow2",
        }
    ]
    assert shown["console"].endswith(f"{vm_name}.console.log")
    again = kvm_state.vm_present(vm_name, **spec)
    assert again["result"] is True and again["changes"] == {}, again
    assert kvm.vm_list()[vm_name]["state"] == "running"


def test_a_change_a_running_vm_cannot_take_is_pending_and_the_rest_is_kept(
    kvm_state, kvm, conn, pool, vm_name
):
    pname, _ = pool
    assert kvm_state.vm_present(vm_name, **_spec(pname))["result"] is True
    dom = conn.lookupByName(vm_name)
    # what the pillar does not model, added by hand: a <metadata> entry and a watchdog
    root = etree.fromstring(dom.XMLDesc(2))
    meta = etree.SubElement(root, "metadata")
    etree.SubElement(meta, "{https://example.org/kvt}note").text = "hand-made"
    etree.SubElement(root.find("devices"), "watchdog", model="i6300esb", action="reset")
    conn.defineXML(etree.tostring(root, encoding="unicode"))
    spec = _spec(
        pname,
        memory="96M",
        disks=[{"pool": pname, "volume": "a.qcow2"}, {"pool": pname, "volume": "b.qcow2"}],
    )
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == predicted["changes"]
    assert ret["changes"]["memory"] == {"old": "64 MiB", "new": "96 MiB"} and ret["bytes"][
        "memory"
    ] == {"old": 64 * M, "new": 96 * M}
    assert "pending" in ret["changes"]["restart"]["new"]
    assert "takes effect when it restarts" in ret["comment"]
    inactive = dom.XMLDesc(2)
    assert "hand-made" in inactive and "i6300esb" in inactive and "b.qcow2" in inactive
    assert dom.info()[1] == 64 * 1024, "the running VM was changed live"
    again = kvm_state.vm_present(vm_name, **spec)
    assert again["result"] is True and again["changes"] == {}, again
    # the restart happens at the next start: stopped and started, the VM runs as declared
    kvm.vm_stop(vm_name)
    kvm.vm_start(vm_name)
    assert dom.info()[1] == 96 * 1024 and len(kvm.vm_show(vm_name)["disks"]) == 2
    # a disk removed from the pillar is detached; its volume stays
    ret = kvm_state.vm_present(vm_name, **_spec(pname, memory="96M", state="stopped"))
    assert ret["result"] is True and ret["changes"].get("state") == {
        "old": "running",
        "new": "stopped",
    }, ret
    assert [d["volume"] for d in kvm.vm_show(vm_name)["disks"]] == ["a.qcow2"]
    assert "b.qcow2" in kvm.volume_list(pname)


def test_vm_absent_keeps_volumes_and_purge_keeps_what_others_need(
    kvm_state, kvm, conn, pool, vm_name, names
):
    pname, path = pool
    spec = _spec(
        pname,
        state="stopped",
        disks=[{"pool": pname, "volume": "a.qcow2"}, {"pool": pname, "volume": "b.qcow2"}],
    )
    assert kvm_state.vm_present(vm_name, **spec)["result"] is True
    write_pattern(os.path.join(path, "a.qcow2"), 3, 0)
    # another image is built on a.qcow2: purging must keep it
    kvm.volume_create(pname, "child.qcow2", backing="a.qcow2")
    predicted = kvm_state.vm_absent(vm_name, purge=True, test=True)
    assert predicted["result"] is None and predicted["changes"]["volumes"] == {
        "old": [f"{pname}/b.qcow2"],
        "new": None,
    }, predicted
    assert "child.qcow2" in predicted["comment"]
    ret = kvm_state.vm_absent(vm_name, purge=True)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"]["volumes"] == predicted["changes"]["volumes"]
    vols = kvm.volume_list(pname)
    assert "a.qcow2" in vols and "b.qcow2" not in vols
    ok, out = reads(os.path.join(path, "child.qcow2"), {0: 3})
    assert ok, out
    assert kvm_state.vm_absent(vm_name)["comment"].endswith("is already absent")
    # without purge every volume stays
    other = names("vm-")
    assert (
        kvm_state.vm_present(
            other, **_spec(pname, state="stopped", disks=[{"pool": pname, "volume": "child.qcow2"}])
        )["result"]
        is True
    )
    ret = kvm_state.vm_absent(other)
    assert ret["result"] is True and "volumes are kept" in ret["comment"]
    assert "child.qcow2" in kvm.volume_list(pname)


def test_run_state_and_execution_functions(kvm_state, kvm, pool, vm_name):
    pname, _ = pool
    assert kvm_state.vm_present(vm_name, **_spec(pname, state="paused"))["result"] is True
    assert kvm.vm_show(vm_name)["state"] == "paused"
    assert kvm.vm_start(vm_name) is True and kvm.vm_show(vm_name)["state"] == "running"
    # a guest without an OS ignores ACPI: a clear error, then power-off only with force
    with pytest.raises(CommandExecutionError, match="did not shut down within 1s"):
        kvm.vm_shutdown(vm_name, timeout=1)
    assert (
        kvm.vm_shutdown(vm_name, timeout=1, force=True) is True
        and kvm.vm_show(vm_name)["state"] == "shutoff"
    )
    with pytest.raises(CommandExecutionError, match="is not running"):
        kvm.vm_reboot(vm_name)
    assert kvm.vm_autostart(vm_name) is True and kvm.vm_show(vm_name)["autostart"] is True
    assert (
        kvm.vm_autostart(vm_name, enabled=False) is True
        and kvm.vm_show(vm_name)["autostart"] is False
    )
    assert isinstance(kvm.vm_console(vm_name, lines=5), str)
    ret = kvm_state.vm_present(vm_name, **_spec(pname, state="stopped"))
    assert ret["result"] is True and ret["changes"] == {}, ret
    gone = kvm.vm_undefine(vm_name)
    assert gone == {"removed": vm_name, "deleted": [], "kept": []}
    with pytest.raises(CommandExecutionError, match="does not exist"):
        kvm.vm_show(vm_name)


def test_bad_input_names_the_field_and_changes_nothing(kvm_state, kvm, pool, vm_name):
    pname, _ = pool
    for spec, message in [
        (_spec(pname, memory="2X"), f"{vm_name}:memory: '2X' is not a size"),
        (_spec(pname, vcpus=0), f"{vm_name}:vcpus"),
        (
            _spec(pname, disks=[{"pool": "kvt-nope", "volume": "a.qcow2"}]),
            f"{vm_name}:disks:0:pool: pool 'kvt-nope' does not exist",
        ),
        (
            _spec(pname, disks=[{"pool": pname, "volume": "zz.qcow2"}]),
            f"{vm_name}:disks:0:volume: volume 'zz.qcow2' does not exist",
        ),
        (
            _spec(pname, nics=[{"bridge": "br0", "network": "default"}]),
            "exactly one of bridge and network",
        ),
    ]:
        ret = kvm_state.vm_present(vm_name, **spec)
        assert ret["result"] is False and message in ret["comment"], (spec, ret["comment"])
        with pytest.raises(CommandExecutionError, match="does not exist"):
            kvm.vm_show(vm_name)
    with pytest.raises(SaltInvocationError, match="memory"):
        kvm.vm_define(vm_name, memory="lots", vcpus=1)


def test_a_vm_disk_declared_here_is_guarded_like_any_other(kvm_state, kvm, pool, vm_name):
    pname, _ = pool
    assert kvm_state.vm_present(vm_name, **_spec(pname, state="stopped"))["result"] is True
    with pytest.raises(CommandExecutionError, match=f"used by VM {vm_name}"):
        kvm.volume_delete(pname, "a.qcow2")


# --- live changes, kvm.vm_attach / kvm.vm_detach, volumes made by a disk entry -------------


@pytest.fixture
def bridges():
    """Factory: a fresh ``kvt-`` kernel bridge in the root namespace (where VM taps go); removed
    afterwards."""
    from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

    made = []

    def make():
        name = sandbox.uid("vb-")
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="bridge")
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
        made.append(name)
        return name

    try:
        yield make
    finally:
        with IPRoute() as ipr:
            for name in made:
                for idx in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=idx)


def _live(dom):
    return etree.fromstring(dom.XMLDesc(0))


def _live_nics(dom):
    return {
        i.find("mac").get("address"): (
            i.find("source").get("bridge"),
            i.find("link").get("state") if i.find("link") is not None else "up",
        )
        for i in _live(dom).findall("devices/interface")
    }


def test_what_a_running_vm_can_take_is_applied_live_and_persisted(
    kvm_state, kvm, conn, pool, vm_name, bridges
):
    """Disk and NIC hotplug, a NIC moved to another bridge and its link pulled, the balloon
    and vCPUs within their maximum: live and in the definition, predicted by test=True,
    and a second apply changes nothing. Over the maximum: pending restart."""
    pname, path = pool
    br1, br2 = bridges(), bridges()
    spec = _spec(
        pname, max_memory="128M", max_vcpus=2, nics=[{"bridge": br1, "mac": "52:54:00:4b:00:01"}]
    )
    assert kvm_state.vm_present(vm_name, **spec)["result"] is True
    dom = conn.lookupByName(vm_name)
    assert dom.info()[1] == 128 * 1024 and dom.vcpusFlags(1) == 1
    spec = _spec(
        pname,
        memory="96M",
        max_memory="128M",
        vcpus=2,
        max_vcpus=2,
        disks=[{"pool": pname, "volume": "a.qcow2"}, {"pool": pname, "volume": "b.qcow2"}],
        nics=[
            {"bridge": br2, "mac": "52:54:00:4b:00:01", "link": "down"},
            {"bridge": br1, "mac": "52:54:00:4b:00:02"},
            {"bridge": br1},
        ],
    )
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    assert predicted["result"] is None and "restart" not in predicted["changes"], predicted
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == predicted["changes"]
    live = ret["changes"]["live"]["new"]
    assert live == [
        f"NIC 52:54:00:4b:00:01 {br1} -> {br2}, link down",
        f"attach disk {pname}/b.qcow2 as vdb",
        f"attach NIC 52:54:00:4b:00:02 on bridge {br1}",
        f"attach NIC (new) on bridge {br1}",
        "memory 96 MiB",
        "vcpus 1 -> 2",
    ], live
    assert "restart" not in ret["changes"] and "applied live" in ret["comment"]
    # live ...
    nics = _live_nics(dom)
    new_mac = (set(nics) - {"52:54:00:4b:00:01", "52:54:00:4b:00:02"}).pop()
    assert nics == {
        "52:54:00:4b:00:01": (br2, "down"),
        "52:54:00:4b:00:02": (br1, "up"),
        new_mac: (br1, "up"),
    }
    # the NIC declared without a MAC has the same one live and in the definition
    assert [
        i.find("mac").get("address")
        for i in etree.fromstring(dom.XMLDesc(2)).findall("devices/interface")
    ][2] == new_mac
    assert [d.find("source").get("file") for d in _live(dom).findall("devices/disk")] == [
        os.path.join(path, v) for v in ("a.qcow2", "b.qcow2")
    ]
    assert dom.vcpusFlags(1) == 2 and dom.info()[1] == 128 * 1024
    # ... and persisted
    shown = kvm.vm_show(vm_name)
    inactive = etree.fromstring(dom.XMLDesc(2))
    assert inactive.find("currentMemory").text == str(96 * 1024) and inactive.find(
        "memory"
    ).text == str(128 * 1024)
    assert (
        inactive.find("vcpu").text == "2"
        and len(inactive.findall("devices/interface")) == 3
        and len(inactive.findall("devices/disk")) == 2
    )
    assert (
        shown["memory"] == 96 * M or shown["memory"] == 128 * M
    )  # what the guest has: a guest without an OS never inflates the balloon
    again = kvm_state.vm_present(vm_name, **spec)
    assert again["result"] is True and again["changes"] == {}, again

    # over the maximum: written to the definition, pending until a restart
    over = dict(spec, memory="256M", max_memory="256M", vcpus=4, max_vcpus=4)
    predicted = kvm_state.vm_present(vm_name, test=True, **over)
    ret = kvm_state.vm_present(vm_name, **over)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret
    pending = ret["changes"]["restart"]["new"]
    assert (
        pending.startswith("pending: ")
        and "max_memory 128 MiB -> 256 MiB" in pending
        and "vcpus 4 (above the running maximum 2)" in pending
    ), pending
    assert (
        "live" not in ret["changes"]
        and "max_vcpus 2 -> 4, vcpus 4 (above the running maximum 2): written to its definition, "
        "takes effect when it restarts"
        in ret["comment"]
    ), ret
    assert dom.info()[1] == 128 * 1024 and dom.vcpusFlags(1) == 2
    assert kvm_state.vm_present(vm_name, **over)["changes"] == {}
    kvm.vm_stop(vm_name)
    kvm.vm_start(vm_name)
    assert dom.info()[1] == 256 * 1024 and dom.vcpusFlags(1) == 4


def test_a_detach_the_guest_does_not_answer_is_reported_pending(
    kvm_state, kvm, conn, pool, vm_name, bridges, monkeypatch
):
    """A guest without an OS never answers a hot-unplug request: the state waits a bounded time,
    the device leaves the definition, and the run says it is still attached until a restart."""
    from salt_kvm import vm_live  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(vm_live, "DETACH_TIMEOUT", 6.0)
    pname, _ = pool
    br = bridges()
    two = _spec(
        pname,
        disks=[{"pool": pname, "volume": "a.qcow2"}, {"pool": pname, "volume": "b.qcow2"}],
        nics=[{"bridge": br, "mac": "52:54:00:4b:00:11"}],
    )
    assert kvm_state.vm_present(vm_name, **two)["result"] is True
    one = _spec(pname)
    predicted = kvm_state.vm_present(vm_name, test=True, **one)
    assert predicted["changes"]["live"]["new"] == [
        f"detach NIC 52:54:00:4b:00:11 on bridge {br}",
        f"detach disk vdb ({_path(pool, 'b.qcow2')})",
    ], predicted
    ret = kvm_state.vm_present(vm_name, **one)
    assert ret["result"] is True, ret["comment"]
    pending = ret["changes"]["restart"]["new"]
    assert (
        "live" not in ret["changes"]
        and "did not release it within 6s" in pending
        and "52:54:00:4b:00:11" in pending
    ), ret
    assert (
        "did not release it within 6s" in ret["comment"]
        and "takes effect when it restarts" in ret["comment"]
    ), ret
    dom = conn.lookupByName(vm_name)
    inactive = dom.XMLDesc(2)
    assert "52:54:00:4b:00:11" not in inactive and "b.qcow2" not in inactive
    assert "b.qcow2" in kvm.volume_list(pname)
    assert kvm_state.vm_present(vm_name, **one)["changes"] == {}
    # restart: true finishes what the guest would not
    ret = kvm_state.vm_present(
        vm_name,
        **dict(
            one, disks=[{"pool": pname, "volume": "a.qcow2"}], restart=True, shutdown_timeout="1s"
        ),
    )
    assert ret["result"] is False and "did not shut down within 1" in ret["comment"], (
        ret
    )  # no OS: no ACPI shutdown either
    kvm.vm_stop(vm_name)
    kvm.vm_start(vm_name)
    assert "52:54:00:4b:00:11" not in dom.XMLDesc(0)


def _path(pool, volume):
    return os.path.join(pool[1], volume)


def test_disk_entries_make_missing_volumes_and_never_resize(kvm_state, kvm, pool, vm_name):
    pname, _ = pool
    disks = [
        {"pool": pname, "volume": "a.qcow2"},
        {"pool": pname, "volume": "new.raw", "size": "16M", "format": "raw"},
        {"pool": pname, "volume": "child.qcow2", "backing": "b.qcow2"},
    ]
    spec = _spec(pname, disks=disks)
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    assert predicted["result"] is None and predicted["changes"]["volumes"]["new"] == [
        f"{pname}/new.raw (16 MiB raw)",
        f"{pname}/child.qcow2 (qcow2 on b.qcow2)",
    ], predicted
    assert "would create volume" in predicted["comment"]
    assert "new.raw" not in kvm.volume_list(pname)
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret
    vols = kvm.volume_list(pname)
    assert vols["new.raw"]["capacity"] == 16 * M and vols["new.raw"]["format"] == "raw", vols[
        "new.raw"
    ]
    child = kvm.volume_show(pname, "child.qcow2")
    assert (
        child["format"] == "qcow2"
        and child["backing"].endswith("b.qcow2")
        and child["capacity"] == 32 * M
    ), child
    assert [d["volume"] for d in kvm.vm_show(vm_name)["disks"]] == [
        "a.qcow2",
        "new.raw",
        "child.qcow2",
    ]
    assert kvm_state.vm_present(vm_name, **spec)["changes"] == {}
    # a running VM: the new volume is made and hotplugged
    spec2 = _spec(pname, disks=disks + [{"pool": pname, "volume": "more.qcow2", "size": "8M"}])
    predicted = kvm_state.vm_present(vm_name, test=True, **spec2)
    ret = kvm_state.vm_present(vm_name, **spec2)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret
    assert (
        ret["changes"]["live"]["new"] == [f"attach disk {pname}/more.qcow2 as vdd"]
        and "restart" not in ret["changes"]
    )
    assert kvm_state.vm_present(vm_name, **spec2)["changes"] == {}
    # a declared size larger than the existing volume: an error at its path, nothing changes
    bigger = _spec(pname, disks=[dict(d) for d in disks])
    bigger["disks"][1]["size"] = "64M"
    ret = kvm_state.vm_present(vm_name, **bigger)
    assert (
        ret["result"] is False
        and f"{vm_name}:disks:1:size: volume {pname}/new.raw has 16 MiB, less than the "
        "declared 64 MiB"
        in ret["comment"]
    ), ret
    assert (
        kvm.volume_list(pname)["new.raw"]["capacity"] == 16 * M
        and len(kvm.vm_show(vm_name)["disks"]) == 4
    )


def test_a_failed_new_vm_takes_its_new_volumes_with_it(kvm_state, kvm, pool, vm_name, names):
    """The VM cannot start (its bridge does not exist): the new VM is removed, and so are the
    volumes this run made for it (still empty); the existing ones stay."""
    pname, _ = pool
    spec = _spec(
        pname,
        disks=[
            {"pool": pname, "volume": "a.qcow2"},
            {"pool": pname, "volume": "fresh.qcow2", "size": "8M"},
        ],
        nics=[{"bridge": names("nb-")}],
    )
    ret = kvm_state.vm_present(vm_name, **spec)
    assert (
        ret["result"] is False
        and f"restored removed the new VM '{vm_name}' (and deleted the new volume "
        f"{pname}/fresh.qcow2)"
        in ret["comment"]
    ), ret
    vols = kvm.volume_list(pname)
    assert "fresh.qcow2" not in vols and "a.qcow2" in vols
    with pytest.raises(CommandExecutionError, match="does not exist"):
        kvm.vm_show(vm_name)
    # kvm.vm_define takes the same disk entries
    shown = kvm.vm_define(
        vm_name,
        memory="64M",
        vcpus=1,
        disks=[{"pool": pname, "volume": "byhand.qcow2", "size": "8M"}],
    )
    assert (
        shown["disks"][0]["volume"] == "byhand.qcow2"
        and kvm.volume_list(pname)["byhand.qcow2"]["capacity"] == 8 * M
    )


def test_live_bad_input_names_the_field(kvm_state, kvm, pool, vm_name):
    pname, _ = pool
    for extra, message in [
        (
            {"memory": "256M", "max_memory": "128M"},
            f"{vm_name}:memory: is more than max_memory (128 MiB)",
        ),
        ({"vcpus": 3, "max_vcpus": 2}, f"{vm_name}:vcpus: is more than max_vcpus (2)"),
        (
            {
                "disks": [
                    {"pool": pname, "volume": "x.qcow2", "backing": "a.qcow2", "format": "raw"}
                ]
            },
            f"{vm_name}:disks:0:format: must be qcow2 with backing",
        ),
        (
            {"disks": [{"pool": pname, "volume": "x.qcow2", "format": "raw"}]},
            f"{vm_name}:disks:0:format: needs size or backing",
        ),
        (
            {"disks": [{"pool": pname, "volume": "x.iso", "size": "1M", "device": "cdrom"}]},
            f"{vm_name}:disks:0:size: cannot make a CD-ROM",
        ),
        (
            {"disks": [{"pool": pname, "volume": "x.qcow2", "backing": "zz.qcow2"}]},
            f"{vm_name}:disks:0:backing: volume 'zz.qcow2' does not exist in pool '{pname}'",
        ),
        ({"nics": [{"bridge": "br0", "link": "sideways"}]}, f"{vm_name}:nics:0:link"),
        (
            {
                "disks": [
                    {"pool": pname, "volume": "a.qcow2"},
                    {"pool": pname, "volume": "x.qcow2", "backing": "a.qcow2"},
                ]
            },
            f"{vm_name}:disks:1:backing: {pname}/a.qcow2 is also disk 0 of this VM",
        ),
    ]:
        ret = kvm_state.vm_present(vm_name, **_spec(pname, **extra))
        assert ret["result"] is False and message in ret["comment"], (extra, ret["comment"])
        with pytest.raises(CommandExecutionError, match="does not exist"):
            kvm.vm_show(vm_name)
    assert "x.qcow2" not in kvm.volume_list(pname)


def test_vm_attach_and_detach(kvm_state, kvm, conn, pool, vm_name, bridges):
    pname, path = pool
    br = bridges()
    assert kvm_state.vm_present(vm_name, **_spec(pname))["result"] is True
    dom = conn.lookupByName(vm_name)
    got = kvm.vm_attach(vm_name, device="disk", pool=pname, volume="b.qcow2")
    assert got == {
        "device": "disk",
        "target": "vdb",
        "pool": pname,
        "volume": "b.qcow2",
        "path": os.path.join(path, "b.qcow2"),
        "live": True,
        "persistent": True,
    }
    assert "b.qcow2" in dom.XMLDesc(0) and "b.qcow2" in dom.XMLDesc(2)
    nic = kvm.vm_attach(vm_name, device="nic", bridge=br)
    mac = nic["mac"]
    assert (
        nic["bridge"] == br
        and mac.startswith("52:54:00:")
        and mac in dom.XMLDesc(0)
        and mac in dom.XMLDesc(2)
    )
    for kwargs, exc, message in [
        ({"device": "cdrom"}, SaltInvocationError, "device: 'cdrom' is not one of"),
        ({"device": "disk", "volume": "b.qcow2"}, SaltInvocationError, "disk:pool: is required"),
        (
            {"device": "disk", "pool": pname, "volume": "b.qcow2"},
            SaltInvocationError,
            f"volume: {pname}/b.qcow2 is already disk vdb",
        ),
        (
            {"device": "disk", "pool": pname, "volume": "zz.qcow2"},
            SaltInvocationError,
            "volume: volume 'zz.qcow2' does not exist",
        ),
        (
            {"device": "disk", "pool": pname, "volume": "b.qcow2", "bridge": br},
            SaltInvocationError,
            "bridge: does not apply to device=disk",
        ),
        (
            {"device": "nic", "bridge": br, "mac": mac},
            SaltInvocationError,
            f"mac: VM '{vm_name}' already has a NIC with MAC {mac}",
        ),
        (
            {"device": "nic", "bridge": br, "network": "default"},
            SaltInvocationError,
            "exactly one of bridge and network",
        ),
    ]:
        with pytest.raises(exc, match=message):
            kvm.vm_attach(vm_name, **kwargs)
    with pytest.raises(SaltInvocationError, match="mac: is required with device=nic"):
        kvm.vm_detach(vm_name, device="nic")
    with pytest.raises(
        SaltInvocationError, match=f"mac: VM '{vm_name}' has no NIC 52:54:00:ff:ff:ff"
    ):
        kvm.vm_detach(vm_name, device="nic", mac="52:54:00:ff:ff:ff")
    with pytest.raises(SaltInvocationError, match="target: give the disk's target"):
        kvm.vm_detach(vm_name, device="disk")
    # a guest without an OS keeps the NIC: a clear error, the definition no longer has it
    with pytest.raises(
        CommandExecutionError,
        match=(
            f"NIC {mac} is still attached: the guest did not release it within 1s.*leaves at the "
            "next restart"
        ),
    ):
        kvm.vm_detach(vm_name, device="nic", mac=mac, timeout=1)
    assert mac not in dom.XMLDesc(2)
    # shut off: only the definition, at once
    kvm.vm_stop(vm_name)
    assert kvm.vm_detach(vm_name, device="disk", pool=pname, volume="b.qcow2") == {
        "device": "disk",
        "live": False,
        "persistent": True,
        "target": "vdb",
    }
    assert "b.qcow2" not in dom.XMLDesc(2) and "b.qcow2" in kvm.volume_list(pname)
    assert kvm.vm_attach(vm_name, device="disk", pool=pname, volume="b.qcow2")["live"] is False
    assert kvm.vm_detach(vm_name, device="disk", target="vdb")["persistent"] is True


@pytest.mark.parametrize("running", [True, False], ids=["running", "shut-off"])
def test_a_disk_moved_onto_an_external_snapshot_overlay_stays_there(
    kvm_state, kvm, conn, pool, vm_name, running
):
    """An external snapshot puts an overlay on top of the declared volume; the writes since
    the snapshot live in the overlay. A re-apply must not put the declared volume back
    (that would boot the VM from the old image and drop every write since the snapshot),
    and must not report drift either.

    Catches: vm_present treating the overlay as a foreign disk (pending detach, then a
    definition that points at the pre-snapshot image)."""
    pname, path = pool
    spec = _spec(pname, state="running" if running else "stopped")
    assert kvm_state.vm_present(vm_name, **spec)["result"] is True
    kvm.snapshot_create(vm_name, "ext", external=True, disk_only=True, memory=False)
    dom = conn.lookupByName(vm_name)
    overlay = etree.fromstring(dom.XMLDesc(2)).find("devices/disk/source").get("file")
    assert overlay != os.path.join(path, "a.qcow2")
    for test in (True, False):
        again = kvm_state.vm_present(vm_name, test=test, **spec)
        assert again["result"] is True and again["changes"] == {}, again
    assert etree.fromstring(dom.XMLDesc(2)).find("devices/disk/source").get("file") == overlay
    if running:
        assert etree.fromstring(dom.XMLDesc(0)).find("devices/disk/source").get("file") == overlay
    # a real change still applies (to the definition; pending while it runs), and the overlay stays
    # the disk
    more = kvm_state.vm_present(vm_name, **dict(spec, memory="96M"))
    assert more["result"] is True and more["changes"], more
    assert ("when it restarts" in more["comment"]) is running, more["comment"]
    assert etree.fromstring(dom.XMLDesc(2)).find("devices/disk/source").get("file") == overlay


@pytest.mark.parametrize("cpu", ["host-model", "host-passthrough", "qemu64"])
def test_cpu_mode_is_defined_and_converges(kvm_state, conn, pool, vm_name, cpu):
    """``cpu``: the mode (or a named model) in the definition, idempotent, a change written
    to the definition. Shut off: nested KVM on the CI machines refuses host-model's MSRs
    at start ("failed to set MSR 0x10a"), which is the host's limit, not the definition's."""
    pname, _path = pool
    spec = _spec(pname, cpu=cpu, state="stopped")
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True, ret["comment"]
    node = etree.fromstring(conn.lookupByName(vm_name).XMLDesc(2)).find("cpu")
    if cpu.startswith("host-"):
        assert node.get("mode") == cpu
    else:
        assert node.get("mode") == "custom" and node.findtext("model") == cpu
    assert kvm_state.vm_present(vm_name, **spec)["changes"] == {}
    other = "qemu64" if cpu != "qemu64" else "host-model"
    changed = kvm_state.vm_present(vm_name, **dict(spec, cpu=other))
    assert changed["result"] is True and set(changed["changes"]) == {"cpu"}, changed


def test_a_second_writer_on_a_volume_is_refused(
    kvm_state, kvm, conn, pool, vm_name, names, testmode
):
    """A VM may not take as a writable disk a volume another VM has as a disk, nor a volume
    other images are built on: two writers, or a write under a child, corrupt it. Refused at
    the disk's path, in test mode too, with nothing defined; ``shareable: true`` (both sides)
    declares a disk meant to be shared; a read-only CD-ROM is no writer.

    Catches: vm_present / vm_define / vm_attach writing into another VM's disk (a VM made by
    hand, not in the pillar, so kvm.validate_pillar cannot see it) or into a base image."""
    pname, path = pool
    other = names("vm-")
    try:
        sandbox.make_vm(conn, name=other, disk=os.path.join(path, "b.qcow2"))
        conn.storagePoolLookupByName(pname).refresh(0)
        kvm.volume_create(pname, "child.qcow2", size="32M", format="qcow2", backing="a.qcow2")
        for volume, why in (
            ("b.qcow2", f"is a disk of VM {other}"),
            ("a.qcow2", "is the backing file of"),
        ):
            ret = kvm_state.vm_present(
                vm_name, test=testmode, **_spec(pname, disks=[{"pool": pname, "volume": volume}])
            )
            assert (
                ret["result"] is False
                and f"{vm_name}:disks:0:volume" in ret["comment"]
                and why in ret["comment"]
            ), ret
            with pytest.raises(CommandExecutionError, match="does not exist"):
                kvm.vm_show(vm_name)
            with pytest.raises(SaltInvocationError, match=why):
                kvm.vm_define(
                    vm_name, memory="64M", vcpus=1, disks=[{"pool": pname, "volume": volume}]
                )
        if testmode:
            return
        # a VM of its own may take the child; attaching the base or the other VM's disk is refused
        assert (
            kvm_state.vm_present(
                vm_name,
                **_spec(pname, disks=[{"pool": pname, "volume": "child.qcow2"}], state="stopped"),
            )["result"]
            is True
        )
        for volume in ("a.qcow2", "b.qcow2"):
            with pytest.raises(
                SaltInvocationError, match="volume: .*(backing file|is a disk of VM)"
            ):
                kvm.vm_attach(vm_name, device="disk", pool=pname, volume=volume)
        # a raw volume both declare shareable
        sandbox.qemu_img("create", "-q", "-f", "raw", os.path.join(path, "shared.raw"), "16M")
        conn.storagePoolLookupByName(pname).refresh(0)
        shared = {"pool": pname, "volume": "shared.raw", "shareable": True}
        conn.lookupByName(other).attachDeviceFlags(
            "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source "
            f"file='{os.path.join(path, 'shared.raw')}'/>"
            "<target dev='vdb' bus='virtio'/><shareable/></disk>",
            2,
        )
        ret = kvm_state.vm_present(
            vm_name,
            **_spec(
                pname, disks=[{"pool": pname, "volume": "child.qcow2"}, shared], state="stopped"
            ),
        )
        assert ret["result"] is True, ret["comment"]
        assert (
            etree.fromstring(conn.lookupByName(vm_name).XMLDesc(2)).find(
                "devices/disk[2]/shareable"
            )
            is not None
        )
        assert (
            kvm_state.vm_present(
                vm_name,
                **_spec(
                    pname, disks=[{"pool": pname, "volume": "child.qcow2"}, shared], state="stopped"
                ),
            )["changes"]
            == {}
        )
    finally:
        sandbox.remove_vm(conn, other)
