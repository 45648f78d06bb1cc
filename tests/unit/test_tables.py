"""The tables of the kinds drive everything else: a row is all it takes.

Each row of :mod:`salt_kvm.pool_types`, :mod:`salt_kvm.bridge_attrs` and
:mod:`salt_kvm.network_modes` is checked against the names libvirt, the kernel
and pyroute2 use, and against what the schema, netlink, persistence and docs
make of it. A fake row added in a fresh interpreter shows up in validation,
persistence and the pillar reference without any other edit.
"""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from salt_kvm import (
    bridge,
    bridge_attrs,
    bridge_netlink,
    network_modes,
    pool_types,
    schema,
    storage_volumes,
)
from salt_kvm.persist import ifupdown, networkd, networkmanager
from salt_kvm.xml import network as netxml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POOL_RNG = "/usr/share/libvirt/schemas/storagepool.rng"
IF_LINK_H = "/usr/include/linux/if_link.h"


def _errors(pillar):
    try:
        schema.validate_pillar(pillar)
    except schema.InvalidInput as exc:
        return exc.errors
    return []


# --- pool types -------------------------------------------------------------------------


def test_pool_types_are_the_schemas():
    assert schema.POOL_TYPES == pool_types.NAMES
    assert schema.POOL.fields["type"].choices == pool_types.NAMES
    assert storage_volumes.FILE_POOLS == pool_types.FILE_BACKED
    assert set(storage_volumes.ROUNDING) == {t.name for t in pool_types.TYPES if t.size_rounding}
    assert len(set(pool_types.NAMES)) == len(pool_types.NAMES)


@pytest.mark.skipif(not os.path.exists(POOL_RNG), reason="libvirt's schemas are not installed")
def test_pool_types_are_named_as_libvirt_names_them():
    with open(POOL_RNG, encoding="utf-8") as fh:
        rng = fh.read()
    libvirt = set(re.findall(r'<attribute name="type">\s*<value>([a-z-]+)</value>', rng))
    assert set(pool_types.NAMES) <= libvirt, set(pool_types.NAMES) - libvirt


@pytest.mark.parametrize("ptype", pool_types.TYPES, ids=lambda t: t.name)
def test_every_needed_key_is_a_schema_key_and_is_checked(ptype):
    assert ptype.doc and ptype.build in (None, "mkdir", "filesystem", "label", "volume_group")
    assert ptype.default_format in ptype.volume_formats
    assert set(ptype.volume_formats) <= set(schema.VOLUME.fields["format"].choices)
    assert not ptype.local_files or ptype.file_backed
    for need in ptype.needs:
        if "." in need:
            sub, key = need.split(".")
            assert sub == "source" and key in schema.SOURCE.fields
        else:
            assert need in schema.POOL.fields
    found = _errors({"pools": {"p": {"type": ptype.name}}})
    assert [(p, m) for p, m in found] == [
        (f"kvm:pools:p:{need.replace('.', ':')}", f"is required for a {ptype.name} pool")
        for need in ptype.needs
    ]


def test_an_unknown_pool_type_reads_as_the_unknown_row():
    assert pool_types.get("zfs") is pool_types.UNKNOWN
    assert pool_types.get(None) is pool_types.UNKNOWN
    assert not pool_types.UNKNOWN.file_backed and pool_types.UNKNOWN.build is None


def test_volume_rules_are_the_same_in_the_pillar_and_the_state():
    cases = [
        ({}, "size", "is required (or give source or backing)"),
        ({"size": "1G", "sha256": "a" * 64}, "sha256", "needs source"),
        ({"source": "/srv/x.img", "backing": "b"}, "backing", "cannot be combined with source"),
        ({"size": "1G", "backing": "v"}, "backing", "a volume cannot back itself"),
        (
            {"size": "1G", "format": "raw", "backing": "b"},
            "backing",
            "a raw volume cannot have a backing file (use qcow2)",
        ),
    ]
    for vol, key, message in cases:
        pillar = {"pools": {"p": {"type": "dir", "target": "/srv/p", "volumes": {"v": vol}}}}
        assert (f"kvm:pools:p:volumes:v:{key}", message) in _errors(pillar)
        ret = storage_volumes.volume_present(None, "v", pool="p", **vol)
        assert ret["result"] is False
        assert ret["comment"] == f"volume 'v': v:{key}: {message}"


# --- bridge attributes ------------------------------------------------------------------


def test_bridge_attributes_are_the_schemas_netlinks_and_the_bridges():
    assert bridge.ATTRS == bridge_attrs.KEYS
    assert bridge_netlink.TIMERS == bridge_attrs.TIMERS
    for attr in bridge_attrs.ATTRS:
        field = schema.BRIDGE.fields[attr.key]
        kind = {"bool": schema.Bool, "timer": schema.Number, "int": schema.Int}[attr.kind]
        assert type(field) is kind
        if attr.kind != "bool":
            assert (field.minimum, field.maximum) == (attr.minimum, attr.maximum)
        assert schema.BRIDGE.docs[attr.key] == attr.doc
        assert bridge_netlink.BRIDGE_NLA[attr.key] == (attr.nla, attr.pyroute2, attr.kind)
        assert bridge_netlink._BRIDGE_DATA[attr.nla_type][0] == attr.nla
        if attr.absent_default is not None:
            assert bridge_netlink.ABSENT_DEFAULTS[attr.key] == attr.absent_default
        if attr.stp_range:
            lo, hi = attr.stp_range
            assert attr.minimum <= lo <= hi <= attr.maximum


@pytest.mark.skipif(not os.path.exists(IF_LINK_H), reason="the kernel headers are not installed")
def test_netlink_numbers_are_the_kernels():
    with open(IF_LINK_H, encoding="utf-8") as fh:
        text = fh.read()
    body = text[text.index("IFLA_BR_UNSPEC") :]
    names = re.findall(
        r"\b(IFLA_BR_[A-Z0-9_]+)\s*(?:=\s*\d+\s*)?,", body[: body.index("__IFLA_BR_MAX")]
    )
    numbers = {name: i for i, name in enumerate(["IFLA_BR_UNSPEC"] + names[1:])}
    for attr in bridge_attrs.ATTRS:
        assert numbers[attr.nla] == attr.nla_type, attr.key


def test_netlink_names_and_widths_are_pyroute2s():
    ifinfmsg = pytest.importorskip("pyroute2.netlink.rtnl.ifinfmsg")
    nla_map = ifinfmsg.ifinfmsg.ifinfo.bridge_data.nla_map
    for attr in bridge_attrs.ATTRS:
        name, width = nla_map[attr.nla_type]
        assert name == attr.nla
        assert width == "uint" + attr.nla_width[1:]
        assert f"IFLA_{attr.pyroute2.upper()}" == attr.nla


def test_every_back_end_writes_every_attribute():
    spec = {"name": "br0", "ports": [{"name": "eno1"}]}
    for attr in bridge_attrs.ATTRS:
        spec[attr.key] = {"bool": True, "timer": 5, "int": 7}[attr.kind]
    text = {
        "ifupdown": ifupdown.render_bridge(spec),
        "networkd": "".join(networkd.render(spec, lambda _p: None).values()),
        "networkmanager": "".join(networkmanager.render(spec, lambda _p: None).values()),
    }
    for attr in bridge_attrs.ATTRS:
        for backend in bridge_attrs.BACKENDS:
            how = getattr(attr, backend)
            assert how.name in text[backend], (attr.key, backend)
    orders = {b: [getattr(a, b).order for a in bridge_attrs.ATTRS] for b in bridge_attrs.BACKENDS}
    for backend, values in orders.items():
        assert len(set(values)) == len(values), f"two rows share an order in {backend}"


# --- network modes ----------------------------------------------------------------------


def test_network_modes_are_the_schemas_and_the_xmls():
    assert schema.NETWORK.fields["mode"].choices == network_modes.NAMES
    assert netxml.FORWARD_MODES == network_modes.FORWARD
    assert set(netxml.MANAGED_MODES) == {m.name for m in network_modes.MODES if not m.host_bridge}
    assert network_modes.DEFAULT in network_modes.NAMES


@pytest.mark.parametrize("mode", network_modes.MODES, ids=lambda m: m.name)
def test_every_mode_rule_is_checked(mode):
    base = {"mode": mode.name}
    for key, why in mode.requires:
        found = _errors({"networks": {"n": dict(base)}})
        assert (f"kvm:networks:n:{key}", f"is required in mode {mode.name} ({why})") in found
    for keys, why in mode.requires_any:
        found = _errors({"networks": {"n": dict(base)}})
        assert (f"kvm:networks:n:{keys[0]}", f"is required in mode {mode.name} ({why})") in found
    values = {"address": "198.51.100.1/24", "address6": "2001:db8::1/64", "mtu": 1500}
    values.update(domain="example.net", dhcp={}, dhcp6={}, dev="eno1", bridge="br0")
    for key, why in mode.forbids:
        found = _errors({"networks": {"n": dict(base, **{key: values[key]})}})
        assert (f"kvm:networks:n:{key}", f"cannot be set in mode {mode.name} ({why})") in found
    found = _errors({"networks": {"n": dict(base, dev="eno1")}})
    refused = (
        "kvm:networks:n:dev",
        f"can only be set in mode nat or route, not {mode.name}",
    )
    assert (refused in found) is (not mode.dev)


# --- a new row is all it takes ----------------------------------------------------------


def _with_rows(code):
    """Run ``code`` in a fresh interpreter whose tables have the fake rows below."""
    prelude = textwrap.dedent(
        """
        import sys, types

        def patched(name, marker, row):
            path = f"salt_kvm/{name}.py"
            with open(path, encoding="utf-8") as fh:
                src = fh.read()
            assert marker in src
            module = types.ModuleType(f"salt_kvm.{name}")
            module.__file__ = path
            sys.modules[module.__name__] = module
            exec(compile(src.replace(marker, marker + row), path, "exec"), module.__dict__)

        patched("pool_types", "TYPES: tuple[PoolType, ...] = (",
                "PoolType('zfs', 'A ZFS pool.', needs=('source.name',)),")
        patched("bridge_attrs", "ATTRS: tuple[BridgeAttr, ...] = (",
                "BridgeAttr('mcast_querier', 'Act as IGMP querier.', 'bool',"
                " 'IFLA_BR_MCAST_QUERIER', 25, 'u8', 'br_mcast_querier',"
                " ifupdown=Persisted('bridge_mcquerier', 71, words=('0', '1')),"
                " networkd=Persisted('MulticastQuerier', 95),"
                " networkmanager=Persisted('multicast-querier', 95)),")
        patched("network_modes", "MODES: tuple[NetworkMode, ...] = (",
                "NetworkMode('nat6', 'NAT for IPv6 too.', 'nat', dev=True,"
                " requires_any=((('address6',), 'address6: the IPv6 subnet'),)),")
        from salt_kvm import schema
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_new_pool_type_row_is_validated_and_documented():
    out = _with_rows(
        """
        sys.path.insert(0, "docs/_ext")
        import kvm_pillar_reference as ref
        try:
            schema.validate_pillar({"pools": {"z": {"type": "zfs"}}})
        except schema.InvalidInput as exc:
            print(exc)
        print("``zfs``" in "\\n".join(ref.render()))
        """
    )
    assert out.splitlines() == ["kvm:pools:z:source:name: is required for a zfs pool", "True"]


def test_a_new_bridge_attribute_row_is_validated_persisted_and_read():
    out = _with_rows(
        """
        from salt_kvm import bridge, bridge_netlink
        from salt_kvm.persist import ifupdown, networkd, networkmanager
        print(schema.validate_pillar({"bridges": {"br0": {"mcast_querier": True}}}))
        try:
            schema.validate_pillar({"bridges": {"br0": {"mcast_querier": "x"}}})
        except schema.InvalidInput as exc:
            print(exc)
        spec = {"name": "br0", "mcast_querier": True}
        print("bridge_mcquerier 1" in ifupdown.render_bridge(spec))
        print("MulticastQuerier=yes" in "".join(networkd.render(spec, None).values()))
        nm = "".join(networkmanager.render(spec, None).values())
        print("multicast-querier=true" in nm)
        print("mcast_querier" in bridge.ATTRS, bridge_netlink.BRIDGE_NLA["mcast_querier"])
        print(bridge_netlink._BRIDGE_DATA[25][0])
        """
    )
    assert out.splitlines() == [
        "{'bridges': {'br0': {'mcast_querier': True}}}",
        "kvm:bridges:br0:mcast_querier: 'x' is not true or false",
        "True",
        "True",
        "True",
        "True ('IFLA_BR_MCAST_QUERIER', 'br_mcast_querier', 'bool')",
        "IFLA_BR_MCAST_QUERIER",
    ]


def test_a_new_network_mode_row_is_validated():
    out = _with_rows(
        """
        from salt_kvm.xml import network as netxml
        try:
            schema.validate_pillar({"networks": {"n": {"mode": "nat6", "dev": "eno1"}}})
        except schema.InvalidInput as exc:
            print(exc)
        try:
            schema.validate_pillar({"networks": {"n": {"mode": "isolated", "dev": "eno1"}}})
        except schema.InvalidInput as exc:
            print(exc)
        print(netxml.FORWARD_MODES["nat6"])
        """
    )
    assert out.splitlines() == [
        "kvm:networks:n:address6: is required in mode nat6 (address6: the IPv6 subnet)",
        "kvm:networks:n:dev: can only be set in mode nat6 or nat or route, not isolated",
        "nat",
    ]
