"""The small rtnetlink reader of ``bridge_netlink`` (no pyroute2): decoding of
hand-made netlink attributes, shaped like pyroute2's messages."""

import socket
import struct

from salt_kvm import bridge_netlink as nl

NLA_F_NESTED = 0x8000


def nla(kind, payload):
    """One netlink attribute, padded to 4 bytes."""
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def test_link_attributes_bridge_data_and_port_data():
    bridge_data = (
        nla(1, struct.pack("=I", 1500))  # IFLA_BR_FORWARD_DELAY, centiseconds
        + nla(5, struct.pack("=I", 0))  # IFLA_BR_STP_STATE
        + nla(6, struct.pack("=H", 4096))  # IFLA_BR_PRIORITY
        + nla(11, struct.pack("=H", 0x0010) + bytes.fromhex("0200aabbccdd"))  # IFLA_BR_BRIDGE_ID
        + nla(99, b"\1\2\3\4")  # unknown: skipped
    )
    port_data = nla(3, struct.pack("=I", 7)) + nla(4, b"\1") + nla(1, b"\3")
    linkinfo = (
        nla(1, b"bridge\0")
        + nla(2 | NLA_F_NESTED, bridge_data)
        + nla(4, b"bridge\0")
        + nla(5 | NLA_F_NESTED, port_data)
    )
    payload = (
        nla(3, b"br0\0")
        + nla(1, bytes.fromhex("0200AABBCCDD"))
        + nla(4, struct.pack("=I", 1400))
        + nla(18 | NLA_F_NESTED, linkinfo)
    )
    attrs = nl._attrs(payload, nl._LINK)  # pylint: disable=protected-access
    assert attrs.get_attr("IFLA_IFNAME") == "br0"
    assert attrs.get_attr("IFLA_ADDRESS") == "02:00:aa:bb:cc:dd"
    assert attrs.get_attr("IFLA_MTU") == 1400
    assert attrs.get_attr("IFLA_MASTER") is None
    info = attrs.get_attr("IFLA_LINKINFO")
    data = info.get_attr("IFLA_INFO_DATA")
    assert info.get_attr("IFLA_INFO_KIND") == "bridge"
    assert (
        data.get_attr("IFLA_BR_FORWARD_DELAY") == 1500 and data.get_attr("IFLA_BR_PRIORITY") == 4096
    )
    assert len(data) == 4  # the unknown attribute is not decoded
    view = nl._bridge_attrs(data)  # pylint: disable=protected-access
    assert view["forward_delay"] == 15 and view["stp"] is False
    assert view["id"] == f"{struct.unpack('>H', struct.pack('=H', 0x0010))[0]:04x}.0200aabbccdd"
    port = nl._port_attrs(info.get_attr("IFLA_INFO_SLAVE_DATA"))  # pylint: disable=protected-access
    assert port == {"cost": 7, "priority": None, "hairpin": True, "state": "forwarding"}


def test_vlan_entries_from_an_af_bridge_message():
    spec = (
        nla(2, struct.pack("=HH", nl.BRIDGE_VLAN_INFO_PVID | nl.BRIDGE_VLAN_INFO_UNTAGGED, 10))
        + nla(2, struct.pack("=HH", 0, 20))
        + nla(0, b"\0\0")
    )
    msg = nl.Message({"index": 5}, nl._attrs(nla(26 | NLA_F_NESTED, spec), nl._LINK))  # pylint: disable=protected-access

    class Dump:
        @staticmethod
        def get_links(family=None, ext_mask=None):
            assert (family, ext_mask) == (nl.AF_BRIDGE, nl.RTEXT_FILTER_BRVLAN)
            return [msg]

    entries = nl._vlan_entries(Dump())  # pylint: disable=protected-access
    assert entries == {5: [(10, 6), (20, 0)]}
    assert nl.vlans_from_entries(entries[5]) == {"pvid": 10, "untagged": [10], "tagged": [20]}


def test_addresses_and_routes_decode_by_family():
    v6 = socket.inet_pton(socket.AF_INET6, "2001:db8::10")
    attrs = nl._attrs(nla(1, v6) + nla(2, v6), nl._ADDR[socket.AF_INET6])  # pylint: disable=protected-access
    assert attrs == {"IFA_ADDRESS": "2001:db8::10", "IFA_LOCAL": "2001:db8::10"}
    route = nl._attrs(  # pylint: disable=protected-access
        nla(1, socket.inet_aton("203.0.113.0"))
        + nla(5, socket.inet_aton("192.0.2.1"))
        + nla(6, struct.pack("=I", 50))
        + nla(15, struct.pack("=I", 254)),
        nl._ROUTE[socket.AF_INET],  # pylint: disable=protected-access
    )
    assert route == {
        "RTA_DST": "203.0.113.0",
        "RTA_GATEWAY": "192.0.2.1",
        "RTA_PRIORITY": 50,
        "RTA_TABLE": 254,
    }


def test_truncated_attributes_stop_decoding():
    assert nl._attrs(struct.pack("=HH", 2, 3) + b"xxxx", nl._LINK) == {}  # pylint: disable=protected-access
    assert nl._attrs(b"\1\0", nl._LINK) == {}  # pylint: disable=protected-access


def test_netns_path():
    assert nl._netns_path("kvt-x") == "/var/run/netns/kvt-x"  # pylint: disable=protected-access
    assert nl._netns_path("/proc/1/ns/net") == "/proc/1/ns/net"  # pylint: disable=protected-access
