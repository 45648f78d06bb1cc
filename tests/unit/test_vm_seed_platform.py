"""The pure parts of cloud-init seeds, firmware and graphics (the libvirt side is in
tests/functional/test_vm_seed_firmware_graphics.py)."""

import yaml
from lxml import etree

from salt_kvm import cloudinit, schema, vm_platform


def test_user_data_mapping_is_cloud_config_and_a_string_is_kept():
    files = cloudinit.render("web01", {"user_data": {"runcmd": ["echo hi"]}})
    assert files["user-data"] == b"#cloud-config\nruncmd:\n- echo hi\n"
    assert set(files) == {"user-data", "meta-data"}
    assert (
        cloudinit.render("web01", {"user_data": "#!/bin/sh\necho hi\n"})["user-data"]
        == b"#!/bin/sh\necho hi\n"
    )


def test_instance_id_follows_the_content_unless_pinned():
    meta = lambda files: yaml.safe_load(files["meta-data"])  # noqa: E731
    one = meta(cloudinit.render("web01", {"user_data": {"runcmd": ["a"]}}))
    two = meta(cloudinit.render("web01", {"user_data": {"runcmd": ["b"]}}))
    assert one["local-hostname"] == "web01" and one["instance-id"].startswith("web01-")
    assert one["instance-id"] != two["instance-id"]
    assert one == meta(cloudinit.render("web01", {"user_data": {"runcmd": ["a"]}}))
    pinned = meta(
        cloudinit.render(
            "web01",
            {
                "user_data": {"runcmd": ["b"]},
                "meta_data": {"instance-id": "i-1", "local-hostname": "w"},
            },
        )
    )
    assert pinned == {"instance-id": "i-1", "local-hostname": "w"}
    net = cloudinit.render(
        "web01", {"network_config": {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}}
    )
    assert yaml.safe_load(net["network-config"]) == {
        "version": 2,
        "ethernets": {"eth0": {"dhcp4": True}},
    }


def test_summary_shows_hashes_never_content():
    files = cloudinit.render("web01", {"user_data": {"password": "hunter2-secret"}})
    shown = cloudinit.summary(files)
    assert "hunter2-secret" not in repr(shown)
    assert shown["user-data"].startswith("sha256:") and shown["instance-id"].startswith("web01-")
    assert cloudinit.summary(None) is None


def test_seed_round_trip_and_rewrite_only_on_change(tmp_path, monkeypatch):
    monkeypatch.setattr(cloudinit, "SEED_DIR", str(tmp_path))
    spec = {"user_data": {"runcmd": ["echo hi"]}, "network_config": "version: 2\n"}
    assert cloudinit.read(cloudinit.seed_path("web01")) is None
    assert cloudinit.ensure("web01", spec) is True
    assert cloudinit.read(cloudinit.seed_path("web01")) == cloudinit.render("web01", spec)
    inode = (tmp_path / "web01.iso").stat().st_ino
    assert cloudinit.ensure("web01", spec) is False
    assert (tmp_path / "web01.iso").stat().st_ino == inode
    assert cloudinit.ensure("web01", dict(spec, user_data="#!/bin/sh\n")) is True
    assert cloudinit.remove("web01") is True and cloudinit.remove("web01") is False
    assert [p.name for p in tmp_path.iterdir()] == []


def test_graphics_passwords_compare_but_never_show():
    root = etree.fromstring("<domain><os><type>hvm</type></os><devices/></domain>")
    vm_platform.set_graphics(root, {"type": "vnc", "password": "s3cret"})
    el = root.find("devices/graphics")
    assert (
        el.get("passwd") == "s3cret"
        and el.get("listen") == "127.0.0.1"
        and el.get("autoport") == "yes"
    )
    have = vm_platform.graphics_of(root)
    assert "s3cret" not in repr(vm_platform.shown(have))
    other = etree.fromstring("<domain><devices/></domain>")
    vm_platform.set_graphics(other, {"type": "vnc", "password": "0ther"})
    change = vm_platform.shown_change(have, vm_platform.graphics_of(other))
    assert (
        change["old"][0]["password"] == "<hidden>"
        and change["new"][0]["password"] == "<hidden> (changed)"
    )
    assert "s3cret" not in repr(change) and "0ther" not in repr(change)
    vm_platform.set_graphics(root, {"type": "none"})
    assert root.find("devices/graphics") is None


def test_graphics_and_cloud_init_schema():
    assert schema.validate(schema.VM_GRAPHICS, "none", "g") == {"type": "none"}
    assert schema.validate(schema.VM_GRAPHICS, {"type": "vnc", "port": "auto"}, "g") == {
        "type": "vnc",
        "port": "auto",
    }
    for value, message in [
        (
            {"type": "vnc", "password": "123456789"},
            "g:password: VNC uses only the first 8 characters",
        ),
        ({"type": "spice", "password": ""}, "g:password: is not a valid secret"),
        ({"type": "none", "port": 5900}, "g:port: is not used with type none"),
    ]:
        try:
            schema.validate(schema.VM_GRAPHICS, value, "g")
        except schema.InvalidInput as exc:
            assert message in str(exc) and "123456789" not in str(exc)
        else:
            raise AssertionError(value)
    assert (
        schema.validate(schema.VM_CLOUD_INIT, {"user_data": "x", "meta_data": {"a": 1}}, "c")[
            "user_data"
        ]
        == "x"
    )


def test_firmware_edits():
    root = etree.fromstring("<domain><os><type>hvm</type><boot dev='hd'/></os><devices/></domain>")
    assert vm_platform.firmware_of(root) == "bios"
    if vm_platform.uefi_available():
        vm_platform.set_firmware(root, "web01", "uefi")
        assert root.find("os").get("firmware") == "efi" and vm_platform.firmware_of(root) == "uefi"
        assert root.find("os/firmware/feature[@name='secure-boot']").get("enabled") == "no"
    root.find("os").append(
        etree.fromstring("<loader type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>")
    )
    assert vm_platform.firmware_of(root) == "uefi"
    vm_platform.set_firmware(root, "web01", "bios")
    assert (
        vm_platform.firmware_of(root) == "bios"
        and root.find("os/loader") is None
        and root.find("os").get("firmware") is None
    )
