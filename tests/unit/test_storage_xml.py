"""Pool, volume and secret XML: golden files for every pool type, and parse/build round trips.

Regenerate the golden files with ``KVT_REGEN_GOLDEN=1`` (then review the diff).
"""

import os
import pathlib

import pytest

from salt_kvm import schema, storage
from salt_kvm.xml import storage as sxml

GOLDEN = pathlib.Path(__file__).parent / "golden" / "storage"

#: one declared pool per libvirt type, as the pillar writes it
POOLS = {
    "dir": {"type": "dir", "target": "/var/lib/libvirt/images"},
    "fs": {
        "type": "fs",
        "target": "/srv/vms",
        "source": {"devices": ["/dev/sdb1"], "format": "ext4"},
    },
    "netfs-nfs": {
        "type": "netfs",
        "target": "/srv/nfs",
        "source": {"hosts": ["198.51.100.5"], "dir": "/export/vms", "format": "nfs"},
    },
    "netfs-glusterfs": {
        "type": "netfs",
        "target": "/srv/gl",
        "source": {"hosts": ["198.51.100.6"], "dir": "/gv0", "format": "glusterfs"},
    },
    "netfs-cifs": {
        "type": "netfs",
        "target": "/srv/cifs",
        "source": {"hosts": ["198.51.100.7"], "dir": "share", "format": "cifs"},
    },
    "logical": {
        "type": "logical",
        "source": {"name": "vg_vms", "devices": ["/dev/sdc", "/dev/sdd"]},
    },
    "disk": {
        "type": "disk",
        "target": "/dev",
        "source": {"devices": ["/dev/sde"], "format": "gpt"},
    },
    "iscsi": {
        "type": "iscsi",
        "target": "/dev/disk/by-path",
        "source": {
            "hosts": ["198.51.100.8:3260"],
            "devices": ["iqn.2026-01.org.example:storage.t1"],
            "auth": {"type": "chap", "username": "vmhost", "secret": "s3cret-chap"},
        },
    },
    "iscsi-direct": {
        "type": "iscsi-direct",
        "source": {
            "hosts": ["198.51.100.8"],
            "devices": ["iqn.2026-01.org.example:storage.t1"],
            "initiator": "iqn.2026-01.org.example:host1",
        },
    },
    "rbd": {
        "type": "rbd",
        "source": {
            "hosts": ["198.51.100.9:6789", "198.51.100.10"],
            "name": "vms",
            "auth": {
                "type": "ceph",
                "username": "libvirt",
                "secret": "QVFCdGVzdGtleWZvcmNlcGhvbmx5MTIzNDU2Nzg5MA==",
            },
        },
    },
    "gluster": {
        "type": "gluster",
        "source": {"hosts": ["198.51.100.11"], "name": "gv0", "dir": "/"},
    },
}


def _xml(key, spec):
    spec = schema.validate_args(schema.POOL, f"kvt-{key}", spec, name_field=schema.OBJNAME)
    source = storage._xml_source(f"kvt-{key}", spec.get("source"))  # pylint: disable=protected-access
    return spec, sxml.Pool.build(
        f"kvt-{key}", spec["type"], target=spec.get("target"), source=source
    ).to_xml()


@pytest.mark.parametrize("key", sorted(POOLS))
def test_pool_xml_matches_golden(key):
    _, xml = _xml(key, POOLS[key])
    path = GOLDEN / f"pool-{key}.xml"
    if os.environ.get("KVT_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(xml)
    assert xml == path.read_text()


@pytest.mark.parametrize("key", sorted(POOLS))
def test_pool_xml_round_trips_and_hides_secrets(key):
    spec, xml = _xml(key, POOLS[key])
    secret = spec.get("source", {}).get("auth", {}).get("secret")
    if secret:
        assert secret not in xml
    parsed = sxml.Pool(xml)
    assert parsed.type == spec["type"] and parsed.target == spec.get("target")
    declared = storage._declared_source(f"kvt-{key}", spec.get("source"))  # pylint: disable=protected-access
    assert storage._source_changes(parsed.source, declared) == {}  # pylint: disable=protected-access
    # rebuilding from the parsed model gives the same document
    again = sxml.Pool.build(
        parsed.name, parsed.type, target=parsed.target, source=parsed.source
    ).to_xml()
    assert again == xml


def test_libvirt_pool_xml_parses():
    xml = (GOLDEN / "libvirt-pool-dir.xml").read_text()
    pool = sxml.Pool(xml)
    assert pool.type == "dir" and pool.name == "default"
    assert pool.capacity == 270551252992 and pool.available == 85243678720
    assert pool.target == "/var/lib/libvirt/images" and pool.source == {}


def test_volume_xml_golden_and_parse():
    vol = sxml.Volume.build(
        "web01.qcow2",
        20 * 1024**3,
        fmt="qcow2",
        allocation=0,
        backing_path="/srv/base.qcow2",
        backing_format="qcow2",
    )
    xml = vol.to_xml()
    path = GOLDEN / "volume-qcow2-backing.xml"
    if os.environ.get("KVT_REGEN_GOLDEN"):
        path.write_text(xml)
    assert xml == path.read_text()
    parsed = sxml.Volume((GOLDEN / "libvirt-volume-qcow2.xml").read_text())
    assert parsed.name == "top.qcow2" and parsed.format == "qcow2"
    assert parsed.capacity == 16777216 and parsed.backing_path == "/var/tmp/kvt-files/p/base.qcow2"
    assert parsed.backing_format == "qcow2"


def test_secret_xml_has_no_value():
    secret = sxml.Secret.build(
        "salt-kvm/kvt-p",
        "ceph",
        description="salt-kvm pool secret",
        uuid="0b8f5b0e-1c57-4b8a-9d43-3f1b9e6a8c11",
    )
    xml = secret.to_xml()
    path = GOLDEN / "secret-ceph.xml"
    if os.environ.get("KVT_REGEN_GOLDEN"):
        path.write_text(xml)
    assert xml == path.read_text()
    parsed = sxml.Secret(xml)
    assert parsed.usage == "salt-kvm/kvt-p" and parsed.usage_type == "ceph"
    chap = sxml.Secret(sxml.Secret.build("salt-kvm/kvt-q", "iscsi").to_xml())
    assert chap.usage == "salt-kvm/kvt-q" and chap.usage_type == "iscsi"


def test_ipv6_hosts_round_trip():
    pool = sxml.Pool.build(
        "p",
        "iscsi-direct",
        target=None,
        source={
            "hosts": ["[2001:db8::5]:3260", "[2001:db8::6]"],
            "devices": ["iqn.2026-01.x:y"],
            "initiator": "iqn.2026-01.x:z",
        },
    )
    hosts = pool.root.findall("source/host")
    assert [(h.get("name"), h.get("port")) for h in hosts] == [
        ("2001:db8::5", "3260"),
        ("2001:db8::6", None),
    ]
    assert pool.source["hosts"] == ["[2001:db8::5]:3260", "[2001:db8::6]"]


def test_xml_builder_escapes_names():
    pool = sxml.Pool.build("a<b&c", "dir", target='/srv/x"<y>')
    xml = pool.to_xml()
    assert "a&lt;b&amp;c" in xml and sxml.Pool(xml).target == '/srv/x"<y>'


# --- definitions edited in place: what salt-kvm does not model is kept ----------------

KEPT = {
    "dir": """<pool type='dir'><name>p</name><uuid>6c1e9f59-7c8a-4a41-9d1a-1f8f2c0e4d21</uuid>
      <capacity unit='bytes'>10</capacity><allocation unit='bytes'>1</allocation>
      <available unit='bytes'>9</available>
      <source/><target><path>/srv/a</path><permissions><mode>0750</mode><owner>64055</owner>
      <group>64055</group>
      <label>system_u:object_r:virt_image_t:s0</label></permissions></target></pool>""",
    "netfs": """<pool type='netfs' xmlns:fs='http://libvirt.org/schemas/storagepool/fs/1.0'>
      <name>p</name>
      <source><host name='198.51.100.5'/><dir path='/export'/><format type='nfs'/>
      <protocol ver='4'/></source>
      <target><path>/mnt/p</path></target><fs:mount_opts><fs:option name='sync'/></fs:mount_opts>
      </pool>""",
    "scsi": """<pool type='scsi'><name>p</name><source><adapter type='scsi_host' name='host0'/>
      </source>
      <target><path>/dev/disk/by-path</path></target></pool>""",
    "rbd": """<pool type='rbd' xmlns:rbd='http://libvirt.org/schemas/storagepool/rbd/1.0'>
      <name>p</name>
      <source><host name='198.51.100.7' port='6789'/><name>rbdpool</name></source>
      <rbd:config_opts><rbd:option name='client_mount_timeout' value='45'/></rbd:config_opts>
      </pool>""",
}


MARKERS = {
    "dir": ["<mode>0750</mode>", "<owner>64055</owner>", "virt_image_t"],
    "netfs": [
        '<protocol ver="4"/>',
        "mount_opts",
        '<fs:option name="sync"/>',
        '<dir path="/export"/>',
    ],
    "scsi": ['<adapter type="scsi_host" name="host0"/>'],
    "rbd": ["config_opts", "client_mount_timeout", "<name>rbdpool</name>"],
}


@pytest.mark.parametrize("kind", sorted(KEPT))
def test_editing_a_definition_keeps_what_is_not_declared(kind):
    source = {"hosts": ["198.51.100.9"]} if kind in ("netfs", "rbd") else None
    edited = sxml.Pool(KEPT[kind]).edit(target="/srv/b", source=source)
    xml = edited.to_xml()
    for marker in MARKERS[kind]:
        assert marker in xml, (kind, marker, xml)
    assert "capacity" not in xml and "available" not in xml and edited.target == "/srv/b"
    if source:
        assert edited.source["hosts"] == ["198.51.100.9"] and "198.51.100.5" not in xml
