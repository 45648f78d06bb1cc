"""cloud-init seeds, UEFI firmware, graphics consoles and CD-ROMs of declared VMs, against the
real libvirtd.

Tiny VMs without an OS (they idle in the firmware): only libvirt's view and the seed file
matter here. That a real cloud-init reads the seed is tests/functional/test_guest_vms_cloudinit.py.
"""

import io
import os

import pycdlib
import pytest
from lxml import etree

from salt_kvm import cloudinit, vm_platform
from tests.support import sandbox

PASSWORD = "kvtS3cr"  # VNC: at most 8 characters
SECRET_USER_DATA = "kvt-user-password-4711"


@pytest.fixture
def pool(conn, names):
    """A running dir pool with ``a.qcow2`` and an ISO volume ``tools.iso``: ``(name, path)``."""
    name = names("p-")
    _obj, path = sandbox.make_dir_pool(conn, name=name)
    sandbox.qemu_img("create", "-q", "-f", "qcow2", os.path.join(path, "a.qcow2"), "32M")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09", vol_ident="KVTTOOLS")
    iso.add_fp(io.BytesIO(b"kvt\n"), 4, "/README.;1", rr_name="README")
    iso.write(os.path.join(path, "tools.iso"))
    iso.close()
    conn.storagePoolLookupByName(name).refresh(0)
    return name, path


def _spec(pool, **extra):
    spec = {"memory": "64M", "vcpus": 1, "disks": [{"pool": pool, "volume": "a.qcow2"}]}
    spec.update(extra)
    if "state" in spec:
        spec["run_state"] = spec.pop("state")
    return spec


def _user_data(line="hello"):
    return {
        "users": [{"name": "kvt", "plain_text_passwd": SECRET_USER_DATA}],
        "runcmd": [f"echo {line}"],
    }


def _seed_files(name):
    return cloudinit.read(cloudinit.seed_path(name))


def _xml(conn, name, flags=2):
    return etree.fromstring(conn.lookupByName(name).XMLDesc(flags))


# --- cloud-init ---------------------------------------------------------------------------


def test_cloud_init_seed_is_built_attached_and_rewritten_only_on_change(
    kvm_state, kvm, conn, pool, vm_name
):
    pname, _ = pool
    spec = _spec(
        pname,
        cloud_init={
            "user_data": _user_data(),
            "network_config": {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}},
        },
    )
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    assert predicted["result"] is None and not os.path.exists(cloudinit.seed_path(vm_name)), (
        predicted
    )
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == predicted["changes"]
    shown = ret["changes"]["vm"]["new"]["cloud_init"]
    assert set(shown) == {"user-data", "meta-data", "network-config", "instance-id"} and shown[
        "instance-id"
    ].startswith(vm_name + "-")
    assert SECRET_USER_DATA not in repr(ret), "user data shown in the state's return"
    path = cloudinit.seed_path(vm_name)
    files = _seed_files(vm_name)
    assert (
        files["user-data"].startswith(b"#cloud-config\n")
        and SECRET_USER_DATA.encode() in files["user-data"]
    )
    assert (
        b"local-hostname: " + vm_name.encode() in files["meta-data"]
        and b"dhcp4: true" in files["network-config"]
    )
    # the seed: a read-only SATA CD-ROM, as cloud-init's NoCloud finds it (label cidata)
    disk = next(
        d for d in _xml(conn, vm_name).findall("devices/disk") if d.get("device") == "cdrom"
    )
    assert disk.find("source").get("file") == path and disk.find("target").get("bus") == "sata"
    assert disk.find("target").get("dev") == "sda" and disk.find("readonly") is not None
    assert kvm.vm_show(vm_name)["cloud_init"] == path
    stat = os.stat(path)
    again = kvm_state.vm_present(vm_name, **spec)
    assert again["result"] is True and again["changes"] == {}, again
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), (
        "the seed was rewritten without a change"
    )
    # a changed user_data: a new seed (new instance-id), pending the running VM's restart
    spec["cloud_init"]["user_data"] = _user_data("changed")
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    assert os.stat(path).st_ino == stat.st_ino
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret
    assert (
        set(ret["changes"]) == {"cloud_init", "restart"}
        and "pending" in ret["changes"]["restart"]["new"]
    ), ret
    old, new = ret["changes"]["cloud_init"]["old"], ret["changes"]["cloud_init"]["new"]
    assert old["user-data"] != new["user-data"] and old["instance-id"] != new["instance-id"]
    assert SECRET_USER_DATA not in repr(ret)
    assert b"echo changed" in _seed_files(vm_name)["user-data"]
    assert kvm_state.vm_present(vm_name, **spec)["changes"] == {}
    # vm_absent removes the seed (salt-kvm's file), keeps the volumes
    predicted = kvm_state.vm_absent(vm_name, test=True)
    assert predicted["changes"]["cloud_init"] == {"old": path, "new": None} and os.path.exists(path)
    ret = kvm_state.vm_absent(vm_name)
    assert (
        ret["result"] is True and ret["changes"]["cloud_init"] == predicted["changes"]["cloud_init"]
    ), ret
    assert not os.path.exists(path) and "a.qcow2" in kvm.volume_list(pname)


def test_cloud_init_string_user_data_pinned_instance_id_and_removal(
    kvm_state, kvm, conn, pool, vm_name
):
    pname, _ = pool
    script = "#!/bin/sh\necho KVT script\n"
    ci = {"user_data": script, "meta_data": {"instance-id": "kvt-pinned", "local-hostname": "web"}}
    ret = kvm_state.vm_present(vm_name, **_spec(pname, state="stopped", cloud_init=ci))
    assert ret["result"] is True, ret["comment"]
    files = _seed_files(vm_name)
    assert files["user-data"] == script.encode() and "network-config" not in files
    assert (
        b"instance-id: kvt-pinned" in files["meta-data"]
        and b"local-hostname: web" in files["meta-data"]
    )
    # a seed damaged by hand is rewritten
    with open(cloudinit.seed_path(vm_name), "wb") as fh:
        fh.write(b"not an iso")
    ret = kvm_state.vm_present(vm_name, **_spec(pname, state="stopped", cloud_init=ci))
    assert ret["result"] is True and ret["changes"]["cloud_init"]["old"] is None, ret
    assert _seed_files(vm_name)["user-data"] == script.encode()
    # cloud_init taken out of the declaration: the seed is detached and deleted
    ret = kvm_state.vm_present(vm_name, **_spec(pname, state="stopped"))
    assert ret["result"] is True and ret["changes"]["cloud_init"]["new"] is None, ret
    assert not os.path.exists(cloudinit.seed_path(vm_name))
    assert all(d.get("device") != "cdrom" for d in _xml(conn, vm_name).findall("devices/disk"))
    assert kvm_state.vm_present(vm_name, **_spec(pname, state="stopped"))["changes"] == {}


# --- firmware -------------------------------------------------------------------------------


def test_uefi_vm_is_defined_started_with_its_nvram_and_firmware_changes_wait(
    kvm_state, kvm, conn, pool, vm_name, guest_type
):
    if not vm_platform.uefi_available():
        pytest.skip("no UEFI firmware for x86_64 (Debian package ovmf; scripts/host-packages.txt)")
    pname, _ = pool
    # guest_type: qemu (TCG) where nested KVM cannot run a guest (OVMF pauses there, as Linux hangs)
    spec = _spec(pname, firmware="uefi", memory="256M", type=guest_type)
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True, ret["comment"]
    assert (
        ret["changes"] == predicted["changes"] and ret["changes"]["vm"]["new"]["firmware"] == "uefi"
    )
    shown = kvm.vm_show(vm_name)
    assert shown["state"] == "running" and shown["firmware"] == "uefi"
    live_os = _xml(conn, vm_name, 0).find("os")
    nvram = live_os.findtext("nvram")
    assert nvram and os.path.exists(nvram), etree.tostring(live_os)
    assert "OVMF" in (live_os.findtext("loader") or "")
    again = kvm_state.vm_present(vm_name, **spec)
    assert again["result"] is True and again["changes"] == {}, again
    # back to BIOS: written to the definition, pending the restart
    spec["firmware"] = "bios"
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret
    assert (
        ret["changes"]["firmware"] == {"old": "uefi", "new": "bios"}
        and "pending" in ret["changes"]["restart"]["new"]
    )
    assert kvm_state.vm_present(vm_name, **spec)["changes"] == {}
    kvm.vm_stop(vm_name)
    kvm.vm_start(vm_name)
    assert kvm.vm_show(vm_name)["firmware"] == "bios"
    # and UEFI again on the stopped VM: nothing pending; undefining it deletes its NVRAM
    ret = kvm_state.vm_present(vm_name, **dict(spec, firmware="uefi", run_state="stopped"))
    assert ret["result"] is True and set(ret["changes"]) == {"firmware", "state"}, ret
    kvm.vm_undefine(vm_name)
    assert not os.path.exists(nvram), "the VM's NVRAM outlived it"


def test_firmware_bad_value_names_the_field(kvm_state, kvm, pool, vm_name):
    pname, _ = pool
    ret = kvm_state.vm_present(vm_name, **_spec(pname, firmware="efi"))
    assert (
        ret["result"] is False
        and f"{vm_name}:firmware: 'efi' is not one of bios, uefi" in ret["comment"]
    ), ret


def test_uefi_without_ovmf_is_a_clear_error_and_changes_nothing(
    kvm_state, kvm, pool, vm_name, tmp_path, monkeypatch
):
    pname, _ = pool
    monkeypatch.setattr(vm_platform, "FIRMWARE_DIRS", (str(tmp_path),))  # a host without ovmf
    for test in (True, False):
        ret = kvm_state.vm_present(vm_name, test=test, **_spec(pname, firmware="uefi"))
        assert ret["result"] is False, ret
        assert (
            f"{vm_name}:firmware: no UEFI firmware for x86_64 on this host (install Debian's "
            "ovmf package)" in ret["comment"]
        )
        assert vm_name not in kvm.vm_list()


def test_uefi_detection_reads_the_firmware_descriptors(tmp_path):
    assert vm_platform.uefi_available([str(tmp_path)]) is False
    (tmp_path / "50-bios.json").write_text(
        '{"interface-types": ["bios"], "targets": [{"architecture": "x86_64"}]}'
    )
    assert vm_platform.uefi_available([str(tmp_path)]) is False
    (tmp_path / "60-edk2.json").write_text(
        '{"interface-types": ["uefi"], "targets": [{"architecture": "x86_64"}]}'
    )
    assert vm_platform.uefi_available([str(tmp_path)]) is True


# --- graphics -------------------------------------------------------------------------------


def test_vnc_password_is_in_the_definition_and_nowhere_else(
    kvm_state, kvm, conn, pool, vm_name, caplog
):
    pname, _ = pool
    caplog.set_level(1)  # everything, TRACE included
    spec = _spec(pname, graphics={"type": "vnc", "password": PASSWORD})
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret
    assert ret["changes"]["vm"]["new"]["graphics"] == {"type": "vnc", "password": "<hidden>"}
    graphics = _xml(conn, vm_name, 2 | 1).find("devices/graphics")
    assert (
        graphics.get("passwd") == PASSWORD
        and graphics.get("listen") == "127.0.0.1"
        and graphics.get("autoport") == "yes"
    )
    assert "passwd" not in conn.lookupByName(vm_name).XMLDesc(0)
    shown = kvm.vm_show(vm_name)["graphics"]
    assert shown == [{"type": "vnc", "listen": "127.0.0.1", "port": "auto", "password": "<hidden>"}]
    assert kvm.vm_list()[vm_name]["graphics"] == shown
    again = kvm_state.vm_present(vm_name, **spec)
    assert again["result"] is True and again["changes"] == {}, again
    # a changed password is drift (compared through VIR_DOMAIN_XML_SECURE) and still hidden
    spec["graphics"]["password"] = "kvtN3w"
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True, ret
    assert ret["changes"]["graphics"]["old"][0]["password"] == "<hidden>"
    assert ret["changes"]["graphics"]["new"][0]["password"] == "<hidden> (changed)"
    assert "pending" in ret["changes"]["restart"]["new"]
    assert _xml(conn, vm_name, 2 | 1).find("devices/graphics").get("passwd") == "kvtN3w"
    assert kvm_state.vm_present(vm_name, **spec)["changes"] == {}
    # what the minion logs (the test harness's own log line of the call it makes is not the
    # minion's)
    minion_log = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("saltfactories")
    )
    assert f"kvm.vm_present for [{vm_name}]" in minion_log
    for text in (repr(ret), repr(again), repr(predicted), repr(shown), minion_log):
        assert PASSWORD not in text and "kvtN3w" not in text
    # graphics: none removes it; the VM is stopped, so nothing is pending
    ret = kvm_state.vm_present(vm_name, **_spec(pname, graphics="none", state="stopped"))
    assert ret["result"] is True and ret["changes"]["graphics"]["new"] == [], ret
    assert _xml(conn, vm_name).find("devices/graphics") is None
    assert (
        kvm_state.vm_present(vm_name, **_spec(pname, graphics="none", state="stopped"))["changes"]
        == {}
    )


def test_spice_on_a_fixed_port(kvm_state, kvm, conn, pool, vm_name):
    pname, _ = pool
    spec = _spec(
        pname, state="stopped", graphics={"type": "spice", "port": 5999, "listen": "127.0.0.1"}
    )
    assert kvm_state.vm_present(vm_name, **spec)["result"] is True
    graphics = _xml(conn, vm_name).find("devices/graphics")
    assert (
        graphics.get("type") == "spice"
        and graphics.get("port") == "5999"
        and graphics.get("autoport") == "no"
    )
    assert kvm_state.vm_present(vm_name, **spec)["changes"] == {}


@pytest.mark.parametrize(
    "graphics, message",
    [
        (
            {"type": "vnc", "password": "toolongpassword"},
            "graphics:password: VNC uses only the first 8 characters",
        ),
        ({"type": "rdp"}, "graphics:type: 'rdp' is not one of none, vnc, spice"),
        ({"type": "none", "password": "x"}, "graphics:password: is not used with type none"),
        ({"type": "vnc", "port": 80}, "graphics:port: 80 is out of range 5900-65535"),
        (
            {"type": "vnc", "listen": "localhost"},
            "graphics:listen: 'localhost' is not an IP address",
        ),
    ],
)
def test_bad_graphics_names_the_field_and_never_shows_a_password(
    kvm_state, kvm, pool, vm_name, graphics, message
):
    pname, _ = pool
    ret = kvm_state.vm_present(vm_name, **_spec(pname, graphics=graphics))
    assert ret["result"] is False and f"{vm_name}:{message}" in ret["comment"], ret
    assert "toolongpassword" not in ret["comment"]
    assert vm_name not in kvm.vm_list()


def test_bad_cloud_init_names_the_field(kvm_state, kvm, pool, vm_name):
    pname, _ = pool
    for ci, message in [
        ({"user_data": ["a"]}, "cloud_init:user_data: 'list' is not a mapping or a string"),
        ({"meta_data": "instance-id: x"}, "cloud_init:meta_data: 'str' is not a mapping"),
        (
            {"userdata": {}},
            "cloud_init:userdata: unknown key 'userdata' (did you mean 'user_data'?)",
        ),
    ]:
        ret = kvm_state.vm_present(vm_name, **_spec(pname, cloud_init=ci))
        assert ret["result"] is False and f"{vm_name}:{message}" in ret["comment"], ret
        assert vm_name not in kvm.vm_list() and not os.path.exists(cloudinit.seed_path(vm_name))


# --- CD-ROM -------------------------------------------------------------------------------


def test_cdrom_volume_is_attached_read_only_and_purge_keeps_it(kvm_state, kvm, conn, pool, vm_name):
    pname, path = pool
    disks = [
        {"pool": pname, "volume": "a.qcow2"},
        {"pool": pname, "volume": "tools.iso", "device": "cdrom"},
    ]
    spec = _spec(pname, disks=disks, cloud_init={"user_data": {"runcmd": ["true"]}})
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret
    cdroms = [d for d in _xml(conn, vm_name).findall("devices/disk") if d.get("device") == "cdrom"]
    # the pillar's CD-ROM first (sda), the seed after it (sdb)
    assert [(c.find("source").get("file"), c.find("target").get("dev")) for c in cdroms] == [
        (os.path.join(path, "tools.iso"), "sda"),
        (cloudinit.seed_path(vm_name), "sdb"),
    ]
    assert all(
        c.find("readonly") is not None and c.find("target").get("bus") == "sata" for c in cdroms
    )
    assert cdroms[0].find("driver").get("type") == "raw"
    shown = kvm.vm_show(vm_name)["disks"]
    assert {
        "target": "sda",
        "device": "cdrom",
        "path": os.path.join(path, "tools.iso"),
        "pool": pname,
        "volume": "tools.iso",
    } in shown
    assert kvm.vm_show(vm_name)["state"] == "running"
    assert kvm_state.vm_present(vm_name, **spec)["changes"] == {}
    ret = kvm_state.vm_absent(vm_name, purge=True)
    assert ret["result"] is True and ret["changes"]["volumes"]["old"] == [f"{pname}/a.qcow2"], ret
    vols = kvm.volume_list(pname)
    assert "tools.iso" in vols and "a.qcow2" not in vols
    assert not os.path.exists(cloudinit.seed_path(vm_name))


def test_vm_define_and_vm_undefine_handle_the_seed(kvm, pool, vm_name):
    pname, _ = pool
    shown = kvm.vm_define(
        vm_name,
        memory="64M",
        vcpus=1,
        disks=[{"pool": pname, "volume": "a.qcow2"}],
        cloud_init={"user_data": {"runcmd": ["true"]}},
        graphics={"type": "vnc", "password": PASSWORD},
    )
    assert shown["cloud_init"] == cloudinit.seed_path(vm_name) and os.path.exists(
        shown["cloud_init"]
    )
    assert shown["graphics"][0]["password"] == "<hidden>" and PASSWORD not in repr(shown)
    assert kvm.vm_undefine(vm_name)["removed"] == vm_name
    assert not os.path.exists(cloudinit.seed_path(vm_name))
