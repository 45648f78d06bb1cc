"""The ``kvm`` pillar, fuzzed (hypothesis).

Thousands of pillars, valid and not, go through :func:`salt_kvm.schema.validate_pillar`
and :func:`salt_kvm.formula.render` (what ``state.apply kvm`` runs first):

* every outcome is either a normalised tree that renders every part, or
  :class:`~salt_kvm.errors.InvalidInput` whose every error names a path under
  ``kvm`` — never another exception, never a traceback;
* a valid pillar with one fault injected (a wrong type, an unknown key, a huge
  number, unicode, an empty string, a name with ``/``, ``..``, ``<``, ``'`` or a
  space, a 16+ character bridge name, overlapping ranges, a port in two bridges,
  a backing loop, ...) is rejected with an error at the fault's own path;
* none of it reaches libvirt, netlink, a subprocess or any socket: those entry
  points raise while the tests run.

``HYPOTHESIS_PROFILE=robust`` (tests/unit/conftest.py) runs 25 times more examples.
"""

import copy
import ipaddress
import os
import socket
import string
import subprocess

import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

from salt_kvm import formula, schema
from salt_kvm.errors import InvalidInput

EXAMPLES = settings.default.max_examples


# --- nothing may leave the process ---------------------------------------------------------


class Reached(BaseException):
    """Raised by a guarded entry point (a BaseException, so no ``except Exception`` hides it)."""


@pytest.fixture(scope="module", autouse=True)
def nothing_leaves_the_process():
    """libvirt, pyroute2, netlink/unix/inet sockets and subprocesses raise if touched."""
    calls = []

    def trap(what):
        def raiser(*args, **kwargs):
            calls.append(what)
            raise Reached(f"{what} was called during validation/rendering")

        return raiser

    real_socket_init = socket.socket.__init__

    def guarded_socket(self, family=-1, type=-1, proto=-1, fileno=None):  # pylint: disable=redefined-builtin
        if fileno is None:
            calls.append(f"socket({family})")
            raise Reached(f"a socket (family {family}) was opened during validation/rendering")
        real_socket_init(self, family, type, proto, fileno)

    with pytest.MonkeyPatch.context() as mp:
        import libvirt  # pylint: disable=import-outside-toplevel
        import pyroute2  # pylint: disable=import-outside-toplevel
        import pyroute2.netns  # pylint: disable=import-outside-toplevel

        for name in ("open", "openReadOnly", "openAuth"):
            mp.setattr(libvirt, name, trap(f"libvirt.{name}"))
        for name in ("IPRoute", "NetNS", "NDB", "IPBatch", "IW", "IPSet", "AsyncIPRoute"):
            if hasattr(pyroute2, name):
                mp.setattr(pyroute2, name, trap(f"pyroute2.{name}"))
        for name in ("create", "remove", "setns", "pushns"):
            if hasattr(pyroute2.netns, name):
                mp.setattr(pyroute2.netns, name, trap(f"pyroute2.netns.{name}"))
        mp.setattr(socket.socket, "__init__", guarded_socket)
        mp.setattr(subprocess.Popen, "__init__", trap("subprocess.Popen"))
        mp.setattr(os, "system", trap("os.system"))
        mp.setattr(os, "popen", trap("os.popen"))
        yield calls
    assert not calls, calls


def test_the_guards_bite(nothing_leaves_the_process):
    """The traps above are live (else the property "nothing reaches libvirt" proves nothing)."""
    import libvirt  # pylint: disable=import-outside-toplevel
    import pyroute2  # pylint: disable=import-outside-toplevel

    for call in (
        lambda: libvirt.open("qemu:///system"),
        pyroute2.IPRoute,
        lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW),
        lambda: subprocess.run(["true"], check=False),
    ):
        with pytest.raises(Reached):
            call()
    assert len(nothing_leaves_the_process) == 4
    nothing_leaves_the_process.clear()


# --- the outcome every input must have -----------------------------------------------------


def outcome(pillar, tally):
    """Validate and render ``pillar``; return ``None`` if valid, else the InvalidInput.

    Fails the test on any other exception, on an error path outside ``kvm``, or
    on a valid tree that does not render or does not validate again to itself.
    """
    tally["tried"] += 1
    try:
        tree = schema.validate_pillar(pillar)
    except InvalidInput as exc:
        tally["rejected"] += 1
        assert exc.errors, exc
        assert exc.path == exc.errors[0][0]
        for path, message in exc.errors:
            assert isinstance(path, str) and (path == "kvm" or path.startswith("kvm:")), (
                path,
                message,
            )
            assert isinstance(message, str) and message.strip(), (path, message)
            assert "\n" not in message and "Traceback" not in message, message
            assert len(message) < 400, message  # values are shown abbreviated
        text = str(exc)
        assert exc.errors[0][0] in text
        # every part refuses the same pillar the same way (kvm.bridges alone too)
        for part in formula.PARTS:
            with pytest.raises(InvalidInput) as again:
                formula.render(part, pillar)
            assert str(again.value) == text
        return exc
    tally["rendered"] += 1
    assert isinstance(tree, dict)
    assert schema.validate_pillar(copy.deepcopy(tree)) == tree, (
        "the normalised tree must validate to itself"
    )
    ids = set()
    for part in formula.PARTS:
        states = formula.render(part, pillar)
        assert isinstance(states, dict)
        for sid, body in states.items():
            assert sid.startswith("kvm-") and sid not in ids
            ids.add(sid)
            ((func, args),) = body.items()
            assert func.startswith("kvm.") and {"name": args[0]["name"]} == args[0]
    return None


def rejected_at(pillar, path, tally, words=None, or_below=False):
    """``pillar`` is refused with an error at ``path`` (or, ``or_below``, at an item of it)."""
    exc = outcome(pillar, tally)
    assert exc is not None, f"accepted, but {path} is bad: {pillar!r}"
    paths = [p for p, _ in exc.errors]
    if or_below and path not in paths:
        path = next((p for p in paths if p.startswith(path + ":")), path)
    assert path in paths, (path, exc.errors)
    if words:
        message = dict(exc.errors)[path]
        assert words in message, message
    return exc


# --- building blocks ------------------------------------------------------------------------

POISON = [
    "/",
    "<",
    ">",
    "'",
    '"',
    " ",
    "\t",
    "\n",
    "\x00",
    "`",
    "$(",
    ";",
    "|",
    "&",
    "\\",
    "*",
    "?",
    "é",
    "\u202e",
    "\U0001f4a5",
    "\u00a0",
    "%",
    "#",
    "!",
    ",",
    "=",
]
NAMEISH = st.sampled_from(["a", "br", "web01", "x9", "default", "vm_1", "n"])


@st.composite
def poisoned_names(draw):
    """A name any name field must refuse: poison chars, traversal, empty, blank."""
    kind = draw(st.sampled_from(["poison", "dots", "empty", "blank"]))
    if kind == "dots":
        return draw(
            st.sampled_from(["..", ".", "../etc", "../../etc/passwd", "a/../b", "/..", "./x"])
        )
    if kind == "empty":
        return ""
    if kind == "blank":
        return draw(st.sampled_from([" ", "  ", "\t", "\n", " x", "x "]))
    return draw(NAMEISH) + draw(st.sampled_from(POISON)) + draw(st.sampled_from(["", "0", "x"]))


long_ifnames = st.integers(16, 40).map(lambda n: ("br-" + "x" * n)[:n])

macs = st.lists(st.integers(0, 255), min_size=5, max_size=5).map(
    lambda b: "52:54:" + ":".join(f"{x:02x}" for x in b[:4])
)
v4_hosts = st.integers(1, 254).map(lambda i: f"192.0.2.{i}")
doc_v6 = st.integers(1, 0xFFFF).map(lambda i: f"2001:db8:ffff::{i:x}")
sizes = st.one_of(
    st.integers(0, 2**40),
    st.sampled_from(["512M", "20G", "1.5T", "1G", "10737418240", "64K", "0", "1 GiB", "2gb"]),
    st.integers(1, 4096).map(lambda n: f"{n}M"),
)
durations = st.one_of(
    st.sampled_from(["90s", "30m", "12h", "1d", "2w", "7d", "1.5h"]), st.integers(1, 10**7)
)


# --- valid pillars --------------------------------------------------------------------------


@st.composite
def port_vlans(draw):
    vids = draw(st.lists(st.integers(1, 4094), min_size=0, max_size=6, unique=True))
    half = len(vids) // 2
    out = {}
    if draw(st.booleans()) and vids:
        out["pvid"] = vids[0]
    if vids[:half]:
        out["untagged"] = vids[:half]
    if vids[half:]:
        tagged = vids[half:]
        out["tagged"] = [f"{v}-{v}" if draw(st.booleans()) else v for v in tagged]
    return out


@st.composite
def ports(draw, names):
    items = []
    for name in names:
        if draw(st.booleans()):
            items.append(name)
            continue
        port = {"name": name}
        for key, strat in (
            ("cost", st.integers(1, 65535)),
            ("priority", st.integers(0, 63)),
            ("hairpin", st.booleans()),
            ("vlans", port_vlans()),
        ):
            if draw(st.booleans()):
                port[key] = draw(strat)
        items.append(port)
    if draw(st.integers(0, 3)) == 0:  # the mapping form
        return {
            p if isinstance(p, str) else p["name"]: (
                None if isinstance(p, str) else {k: v for k, v in p.items() if k != "name"}
            )
            for p in items
        }
    return items


BRIDGE_OPTIONAL = {
    "hello_time": st.integers(1, 10),
    "max_age": st.integers(6, 40),
    "ageing_time": st.one_of(st.integers(0, 1000000), st.floats(0, 1000000)),
    "priority": st.integers(0, 65535),
    "vlan_filtering": st.booleans(),
    "default_pvid": st.integers(0, 4094),
    "mcast_snooping": st.booleans(),
    "mtu": st.integers(68, 65535),
    "mac": macs,
    "addresses": st.lists(
        st.one_of(v4_hosts.map(lambda a: a + "/24"), doc_v6.map(lambda a: a + "/64")),
        max_size=3,
        unique=True,
    ),
    "gateway": st.just("192.0.2.1"),
    "gateway6": st.just("2001:db8:ffff::1"),
    "routes": st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"to": st.sampled_from(["203.0.113.128/25", "default", "0.0.0.0/0"])},
                optional={"via": v4_hosts, "metric": st.integers(0, 2**32 - 1)},
            ),
            st.fixed_dictionaries(
                {"to": st.sampled_from(["2001:db8:aa::/48", "::/0"])},
                optional={"via": doc_v6, "metric": st.integers(0, 2**32 - 1)},
            ),
        ),
        max_size=2,
    ),
    "persist": st.sampled_from(["auto", "ifupdown", "networkd", "networkmanager", "none"]),
    "probe": st.fixed_dictionaries(
        {},
        optional={
            "ping": v4_hosts,
            "tcp": st.sampled_from(["192.0.2.1:4506", "salt.example.net:4505", "[2001:db8::1]:22"]),
            "timeout": durations,
        },
    ),
}
BRIDGE_OPTIONAL_KEYS = st.lists(
    st.sampled_from(sorted(BRIDGE_OPTIONAL) + ["forward_delay"]), unique=True, max_size=8
)


@st.composite
def bridge(draw, port_names):
    if draw(st.integers(0, 6)) == 0:
        return {"absent": True, "force": draw(st.booleans())}
    out = {}
    if port_names or draw(st.booleans()):
        out["ports"] = draw(ports(port_names))
    stp = draw(st.booleans())
    out["stp"] = stp
    optional = dict(
        BRIDGE_OPTIONAL, forward_delay=st.integers(2, 30) if stp else st.integers(0, 30)
    )
    for key in draw(BRIDGE_OPTIONAL_KEYS):
        out[key] = draw(optional[key])
    return out


@st.composite
def network(draw, index, host_bridges):
    mode = draw(st.sampled_from(["nat", "route", "isolated", "open", "bridge"]))
    if draw(st.integers(0, 6)) == 0:
        return {"absent": True, "force": draw(st.booleans())}
    if mode == "bridge":
        out = {"mode": "bridge", "bridge": draw(st.sampled_from(sorted(host_bridges) + ["brext"]))}
    else:
        out = {"mode": mode} if draw(st.booleans()) or mode != "nat" else {}
        if draw(st.booleans()):
            out["bridge"] = f"virbr{index}"
        base = 16 * index
        net = ipaddress.ip_network(f"198.51.100.{base}/28")
        hosts = list(net.hosts())
        own = draw(st.sampled_from(hosts))
        out["address"] = f"{own}/28"
        free = [h for h in hosts if h != own]
        if draw(st.booleans()):
            # a DHCP range on one side of the network's own address
            below = [h for h in free if h < own]
            above = [h for h in free if h > own]
            side = draw(st.sampled_from([s for s in (below, above) if s]))
            lo, hi = sorted(draw(st.lists(st.sampled_from(side), min_size=2, max_size=2)))
            dhcp = {"start": str(lo), "end": str(hi)}
            taken = draw(st.lists(st.sampled_from(free), unique=True, max_size=3))
            if taken:
                dhcp["hosts"] = [
                    {
                        "ip": str(ip),
                        "mac": f"52:54:00:00:{index:02x}:{i:02x}",
                        **({"name": f"h{index}x{i}"} if draw(st.booleans()) else {}),
                    }
                    for i, ip in enumerate(taken)
                ]
            out["dhcp"] = dhcp
        if draw(st.booleans()):
            out["address6"] = f"2001:db8:{index + 1:x}::1/64"
            if draw(st.booleans()):
                out["dhcp6"] = {
                    "start": f"2001:db8:{index + 1:x}::100",
                    "end": f"2001:db8:{index + 1:x}::1ff",
                    "hosts": [{"ip": f"2001:db8:{index + 1:x}::10", "name": "v6host"}],
                }
        if mode in ("nat", "route") and draw(st.booleans()):
            out["dev"] = "eno9"
        if draw(st.booleans()):
            out["mtu"] = draw(st.integers(68, 65535))
        if draw(st.booleans()):
            out["domain"] = "vms.example.net"
    for key in ("autostart", "restart", "force"):
        if draw(st.booleans()):
            out[key] = draw(st.booleans())
    return out


VOLNAMES = st.builds(
    lambda a, b: a + b,
    st.sampled_from(["a", "web01", "base", "x_1", "v+2", "d-3", "Z", "9", "_t", "ubuntu-24.04"]),
    st.sampled_from(["", ".qcow2", ".img", ".raw", ".iso", ":1", "@x"]),
)


@st.composite
def volumes(draw):
    names = draw(st.lists(VOLNAMES, unique=True, max_size=4))
    out = {}
    for i, name in enumerate(names):
        kind = draw(
            st.sampled_from(
                ["size", "source", "backing", "absent"] if i else ["size", "source", "absent"]
            )
        )
        if kind == "absent":
            out[name] = {"absent": True, "force": draw(st.booleans())}
            continue
        vol = {}
        if kind == "size":
            vol["size"] = draw(sizes)
            vol["format"] = draw(st.sampled_from(["raw", "qcow2", "vmdk"]))
            if draw(st.booleans()):
                vol["preallocation"] = draw(
                    st.sampled_from([True, False, "off", "metadata", "falloc", "full"])
                )
        elif kind == "source":
            vol["source"] = draw(
                st.sampled_from(
                    [
                        "/srv/images/base.img",
                        "http://127.0.0.1:8000/a.img",
                        "https://images.example.net/x/y.qcow2?v=1",
                    ]
                )
            )
            if draw(st.booleans()):
                vol["sha256"] = draw(st.text("0123456789abcdefABCDEF", min_size=64, max_size=64))
        else:
            vol["backing"] = draw(
                st.sampled_from([n for n in names[:i]] + ["/srv/images/base.img"])
            )
            vol["format"] = "qcow2"
            if draw(st.booleans()):
                vol["size"] = draw(sizes)
        out[name] = vol
    return out


@st.composite
def pool(draw, name):
    if draw(st.integers(0, 6)) == 0:
        return {"absent": True, **({"purge": True} if draw(st.booleans()) else {})}
    ptype = draw(
        st.sampled_from(
            [
                "dir",
                "dir",
                "fs",
                "netfs",
                "logical",
                "disk",
                "iscsi",
                "iscsi-direct",
                "rbd",
                "gluster",
            ]
        )
    )
    target = f"/var/lib/libvirt/images/{name}"
    src = {
        "dir": None,
        "fs": {"devices": ["/dev/loop7"], "format": "ext4"},
        "netfs": {"hosts": ["nfs.example.net"], "dir": "/export/vms", "format": "nfs"},
        "logical": {"name": "vg_vms", "devices": ["/dev/sdb"]},
        "disk": {"devices": ["/dev/sdc"], "format": "gpt"},
        "iscsi": {
            "hosts": ["192.0.2.50:3260"],
            "devices": ["iqn.2024-01.net.example:lun0"],
            "auth": {"type": "chap", "username": "salt", "secret": "s3cret-chap"},
        },
        "iscsi-direct": {
            "hosts": ["192.0.2.50"],
            "devices": ["iqn.2024-01.net.example:lun0"],
            "initiator": "iqn.2024-01.net.example:init",
        },
        "rbd": {
            "hosts": ["127.0.0.1:6789", "[2001:db8::5]:6789"],
            "name": "rbd/vms",
            "auth": {"type": "ceph", "username": "libvirt", "secret": "QVFCZGVmZ2g="},
        },
        "gluster": {"hosts": ["127.0.0.1"], "name": "gv0", "dir": "/vms"},
    }[ptype]
    out = {"type": ptype}
    if ptype not in ("logical", "iscsi-direct", "rbd", "gluster") or draw(st.booleans()):
        out["target"] = target
    if src:
        out["source"] = copy.deepcopy(src)
    for key, strat in (
        ("autostart", st.booleans()),
        ("build", st.sampled_from([True, False, "force"])),
        ("force", st.booleans()),
    ):
        if draw(st.booleans()):
            out[key] = draw(strat)
    vols = draw(volumes())
    if vols or draw(st.booleans()):
        out["volumes"] = vols
    return out


@st.composite
def valid_pillars(draw):
    out = {}
    if draw(st.booleans()):
        out["connection"] = {
            "uri": draw(
                st.sampled_from(
                    [
                        "qemu:///system",
                        "qemu+ssh://root@192.0.2.5/system",
                        "qemu:///system?socket=/run/libvirt/libvirt-sock",
                    ]
                )
            )
        }
    bnames = draw(
        st.lists(
            st.sampled_from(
                ["br0", "br1", "br-vm", "br_lan", "brA.10", "br+x", "b", "_br", "br123456789012"]
            ),
            unique=True,
            max_size=3,
        )
    )
    if bnames or draw(st.booleans()):
        counter = iter(range(100))
        out["bridges"] = {}
        for bname in bnames:
            nports = draw(st.integers(0, 3))
            pnames = [
                f"eno{next(counter)}" + draw(st.sampled_from(["", ".100", ".4094"]))
                for _ in range(nports)
            ]
            out["bridges"][bname] = draw(bridge(pnames))
    nnames = draw(
        st.lists(
            st.sampled_from(["default", "lan", "n.1", "n_2", "N+3", "0net", "_x", "a-b", "a..b"]),
            unique=True,
            max_size=4,
        )
    )
    if nnames or draw(st.booleans()):
        out["networks"] = {n: draw(network(i, bnames)) for i, n in enumerate(nnames)}
    pnames = draw(
        st.lists(
            st.sampled_from(["default", "vms", "p_1", "P-2", "9", "iso.store", "x+y"]),
            unique=True,
            max_size=3,
        )
    )
    if pnames or draw(st.booleans()):
        out["pools"] = {p: draw(pool(p)) for p in pnames}
    vms = draw(
        st.lists(st.sampled_from(["web01", "db.2", "vm_3", "A-4", "x"]), unique=True, max_size=3)
    )
    if vms or draw(st.booleans()):
        out["snapshots"] = {
            vm: draw(
                st.fixed_dictionaries(
                    {"every": durations, "keep": st.integers(1, 10000)},
                    optional={
                        "prefix": st.sampled_from(["auto-", "daily.", "x"]),
                        "memory": st.booleans(),
                        "external": st.booleans(),
                        "quiesce": st.booleans(),
                        "older_than": durations,
                    },
                )
            )
            for vm in vms
        }
    return out


@given(pillar=valid_pillars())
@settings(max_examples=EXAMPLES * 2)
def test_valid_pillars_validate_and_render(pillar, fuzz_tally):
    note(repr(pillar))
    exc = outcome(pillar, fuzz_tally)
    assert exc is None, f"a valid pillar was refused: {exc}"


# --- arbitrary data: no crash, errors under kvm ---------------------------------------------

KEYS = sorted(
    {
        "connection",
        "progress",
        "interval",
        "bridges",
        "networks",
        "pools",
        "snapshots",
        "uri",
        "volumes",
        "source",
        "auth",
        "dhcp",
        "hosts",
        "ports",
        "vlans",
        "probe",
        "routes",
    }
    | set(schema.BRIDGE.fields)
    | set(schema.NETWORK.fields)
    | set(schema.POOL.fields)
    | set(schema.VOLUME.fields)
    | set(schema.SOURCE.fields)
    | set(schema.RETENTION.fields)
    | set(schema.PORT.fields)
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "..",
            "../..",
            "/",
            "<x>",
            "'",
            "20G",
            "20X",
            "1d",
            "9" * 400,
            "9" * 400 + "P",
            "192.0.2.1/24",
            "yes",
            "on",
            "eno1",
            "br0",
            "default",
            "nat",
            "dir",
        ]
    ),
    st.binary(max_size=8),
    st.dates(),
)
keys = st.one_of(
    st.sampled_from(KEYS), st.text(max_size=20), st.integers(-5, 5), st.booleans(), st.none()
)
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=12,
)


@given(pillar=anything)
@settings(max_examples=EXAMPLES * 2)
def test_arbitrary_data_gets_a_clear_answer(pillar, fuzz_tally):
    outcome(pillar, fuzz_tally)


@st.composite
def shaped_noise(draw):
    """Pillar-shaped trees: real keys at every level, values of any kind below them."""

    def level(depth):
        if depth > 3:
            return scalars
        return st.one_of(
            scalars,
            st.dictionaries(
                st.one_of(st.sampled_from(KEYS), NAMEISH),
                st.deferred(lambda: level(depth + 1)),
                max_size=3,
            ),
            anything,
        )

    top = {}
    for key in draw(
        st.lists(
            st.sampled_from(["connection", "bridges", "networks", "pools", "snapshots", "bridgs"]),
            unique=True,
            max_size=5,
        )
    ):
        top[key] = draw(st.dictionaries(st.one_of(NAMEISH, poisoned_names()), level(1), max_size=3))
    return top


@given(pillar=shaped_noise())
@settings(max_examples=EXAMPLES * 2)
def test_pillar_shaped_noise_gets_a_clear_answer(pillar, fuzz_tally):
    outcome(pillar, fuzz_tally)


# --- one fault in a valid pillar: rejected at its path --------------------------------------


def leaves_and_records(field, value, path):
    """Yield ``("leaf"|"record"|"map", path, field)`` for the valid ``value`` of ``field``."""
    if isinstance(field, schema.Record):
        if not isinstance(value, dict):
            return  # a shorthand
        yield "record", path, field
        for key, item in value.items():
            yield from leaves_and_records(field.fields[key], item, path + (key,))
    elif isinstance(field, schema.Map):
        yield "map", path, field
        for key, item in (value or {}).items():
            yield from leaves_and_records(field.value, item, path + (key,))
    elif isinstance(field, schema.Ports):
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield from leaves_and_records(schema.PORT, item, path + (i,))
    elif isinstance(field, schema.List) and not isinstance(
        field.item, (schema.Record, schema.List)
    ):
        yield "leaf", path, field
    elif isinstance(field, schema.List):
        for i, item in enumerate(value):
            yield from leaves_and_records(field.item, item, path + (i,))
    elif value is not None:
        yield "leaf", path, field


def kvm_path(path):
    return ":".join(["kvm"] + [str(p) for p in path])


def put(tree, path, value):
    node = tree
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


NOT_STR = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
NOT_BOOL = st.one_of(
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.booleans(), max_size=2),
    st.sampled_from(["true", "yes", "on", "1", "True"]),
)
NOT_INT_TEXT = st.text(alphabet=string.ascii_letters + " .-_/<'é\u202e", max_size=8).filter(
    lambda s: not s.strip().lstrip("-").isdigit()
)
BAD_SIZES = st.one_of(
    st.sampled_from(
        [
            "20X",
            "-1G",
            "1e3",
            "",
            " ",
            "G",
            "1.2.3G",
            "9" * 400,
            "9" * 400 + "P",
            "2E",
            "1 yottabyte",
            "0x10",
            "²",
        ]
    ),
    st.integers(max_value=-1),
    st.integers(min_value=1024**6 + 1),
    st.sampled_from([float("nan"), float("inf"), -1.5, 1e30]),
    st.booleans(),
    st.lists(st.integers(), max_size=1),
)
BAD_DURATIONS = st.one_of(
    st.sampled_from(["1y", "-1d", "", "d", "1dd", "9" * 400, "forever", "1 week"]),
    st.integers(max_value=-1),
    st.sampled_from([float("nan"), float("inf"), -0.5]),
    st.booleans(),
    st.lists(st.integers(), max_size=1),
)
BAD_ADDR = st.sampled_from(
    [
        "",
        "999.1.1.1",
        "192.0.2",
        "192.0.2.1/24",
        "2001:db8::g",
        "localhost",
        "<192.0.2.1>",
        "192.0.2.1 ",
        "0x7f000001",
    ]
)
BAD_IFACE = st.sampled_from(
    [
        "",
        "192.0.2.10",
        "192.0.2.300/24",
        "192.0.2.10/33",
        "2001:db8::1/129",
        "x/24",
        "192.0.2.10/24/1",
        "/24",
    ]
)

#: name fields that must refuse every poisoned name
STRICT_NAMES = {
    id(f)
    for f in (
        schema.IFNAME,
        schema.OBJNAME,
        schema.VOLNAME,
        schema.SNAPNAME,
        schema.PREFIX,
        schema.SHA256,
        schema.HOSTNAME,
    )
}


def bad_values(field):
    """A strategy of values ``field`` must refuse (an oracle independent of its code)."""
    if isinstance(field, schema.Bool):
        return NOT_BOOL
    if isinstance(field, schema.Number):
        lo, hi = field.minimum, field.maximum
        return st.one_of(
            st.text(max_size=4),
            st.booleans(),
            st.just(float("nan")),
            st.floats(max_value=lo, exclude_max=True),
            st.floats(min_value=hi, exclude_min=True),
            st.lists(st.integers(), max_size=1),
        )
    if isinstance(field, schema.Int):
        lo, hi = field.minimum, field.maximum
        return st.one_of(
            NOT_INT_TEXT,
            st.booleans(),
            st.floats(),
            st.integers(max_value=lo - 1),
            st.integers(min_value=hi + 1),
            st.just(10**5000),
            st.lists(st.integers(), max_size=1),
        )
    if isinstance(field, schema.Str):
        options = [NOT_STR, st.just("x" * (field.max_len + 1))]
        if field.min_len:
            options.append(st.just(""))
        if id(field) in STRICT_NAMES:
            options.append(poisoned_names())
        if field is schema.VOLNAME:
            options.append(st.sampled_from(["a..b", "x/../y", "..qcow2"]))
        if field is schema.IFNAME:
            options.append(long_ifnames)
            options.append(st.sampled_from(["br:0", "eno1:1"]))
        return st.one_of(*options)
    if isinstance(field, schema.Enum):
        return st.one_of(
            st.text(max_size=10).filter(lambda s: s not in field.choices),
            st.integers(),
            st.floats(),
            st.lists(st.text(max_size=2), max_size=1),
        )
    if isinstance(field, schema.Size):
        return BAD_SIZES
    if isinstance(field, schema.Duration):
        return BAD_DURATIONS
    if isinstance(field, schema.Interface):
        return st.one_of(BAD_IFACE, NOT_STR)
    if isinstance(field, schema.Network):
        return st.one_of(BAD_ADDR.filter(lambda s: "/" not in s and s), NOT_STR)
    if isinstance(field, schema.Address):
        return st.one_of(BAD_ADDR, NOT_STR)
    if isinstance(field, schema.Mac):
        return st.one_of(
            st.sampled_from(
                ["", "52:54:00:00:00", "52:54:00:00:00:0g", "525400000001", "52:54:00:00:00:01:02"]
            ),
            NOT_STR,
        )
    if isinstance(field, schema.VlanList):
        return st.one_of(
            st.sampled_from(
                [[0], [4095], ["10-5"], ["x"], [True], "4095", ["1-99999"], [-1], [1.5]]
            )
        )
    if isinstance(field, schema.List):
        return st.one_of(
            st.text(min_size=1, max_size=5),
            st.integers(),
            st.dictionaries(st.text(max_size=2), st.integers(), min_size=1, max_size=1),
        )
    raise AssertionError(f"no bad values for {field!r}")


@given(pillar=valid_pillars(), data=st.data())
@settings(max_examples=EXAMPLES * 3)
def test_one_bad_value_is_rejected_at_its_path(pillar, data, fuzz_tally):
    spots = [
        (path, field)
        for kind, path, field in leaves_and_records(schema.PILLAR, pillar, ())
        if kind == "leaf"
    ]
    assume(spots)
    path, field = data.draw(st.sampled_from(spots), label="spot")
    bad = data.draw(bad_values(field), label="bad value")
    if (
        isinstance(field, schema.Int)
        and not isinstance(field, schema.Number)
        and isinstance(bad, str)
        and bad.strip().lstrip("-").isdigit()
    ):
        assume(False)
    tree = copy.deepcopy(pillar)
    put(tree, path, bad)
    note(f"{kvm_path(path)} = {schema._show(bad)}")  # pylint: disable=protected-access
    rejected_at(
        tree, kvm_path(path), fuzz_tally, or_below=isinstance(field, (schema.List, schema.VlanList))
    )


@given(pillar=valid_pillars(), data=st.data())
@settings(max_examples=EXAMPLES)
def test_an_unknown_key_is_rejected_at_its_path(pillar, data, fuzz_tally):
    records = [
        (path, field)
        for kind, path, field in leaves_and_records(schema.PILLAR, pillar, ())
        if kind == "record"
    ]
    path, field = data.draw(st.sampled_from(records), label="record")
    key = data.draw(
        st.one_of(
            st.text(min_size=1, max_size=12),
            st.sampled_from(
                ["stpp", "Type", "size ", "volume", "dhcp4", "mtu\u200b", "<x>", "../x"]
            ),
        ),
        label="key",
    )
    assume(key not in field.fields)
    tree = copy.deepcopy(pillar)
    node = tree
    for step in path:
        node = node[step]
    node[key] = data.draw(st.one_of(st.none(), st.integers(), st.text(max_size=3)))
    rejected_at(tree, kvm_path(path + (key,)), fuzz_tally, words="unknown key")


MAP_PATHS = {
    ("bridges",): schema.IFNAME,
    ("networks",): schema.OBJNAME,
    ("pools",): schema.OBJNAME,
    ("snapshots",): schema.OBJNAME,
}


@given(pillar=valid_pillars(), data=st.data())
@settings(max_examples=EXAMPLES * 2)
def test_a_bad_object_name_is_rejected_at_its_path(pillar, data, fuzz_tally):
    maps = [
        (path, field)
        for kind, path, field in leaves_and_records(schema.PILLAR, pillar, ())
        if kind == "map"
    ]
    assume(maps)
    path, field = data.draw(st.sampled_from(maps), label="map")
    options = [poisoned_names(), NOT_STR.filter(lambda v: not isinstance(v, (list, dict)))]
    if field.key is schema.IFNAME:
        options += [long_ifnames, st.sampled_from(["br:0", "x" * 16, "-rf", ".br0"])]
    if field.key is schema.VOLNAME:
        options.append(
            st.sampled_from(["a..b.qcow2", "../../etc/shadow", "x/y.img", ".hidden", "-rf"])
        )
    name = data.draw(st.one_of(*options), label="name")
    tree = copy.deepcopy(pillar)
    node = tree
    for step in path:
        if node.get(step) is None:
            node[step] = {}
        node = node[step]
    siblings = [v for v in node.values() if isinstance(v, dict)]
    node[name] = copy.deepcopy(siblings[0]) if siblings and data.draw(st.booleans()) else {}
    rejected_at(tree, kvm_path(path + (name,)), fuzz_tally)


# --- cross-field faults ---------------------------------------------------------------------


@given(
    a=st.integers(0, 255),
    plen_a=st.integers(16, 30),
    b=st.integers(0, 255),
    plen_b=st.integers(16, 30),
    host=st.integers(1, 2),
)
@settings(max_examples=EXAMPLES)
def test_overlapping_networks_are_refused_and_disjoint_ones_pass(
    a, plen_a, b, plen_b, host, fuzz_tally
):
    na = ipaddress.ip_network(f"198.51.{a}.0/{plen_a}", strict=False)
    nb = ipaddress.ip_network(f"198.51.{b}.0/{plen_b}", strict=False)
    pillar = {
        "networks": {
            "one": {"address": f"{na.network_address + host}/{plen_a}"},
            "two": {"address": f"{nb.network_address + host}/{plen_b}"},
        }
    }
    if na.overlaps(nb):
        rejected_at(pillar, "kvm:networks:two:address", fuzz_tally, words="overlaps network 'one'")
    else:
        assert outcome(pillar, fuzz_tally) is None


@given(
    a=st.integers(0, 0xFFFF),
    plen_a=st.integers(32, 64),
    b=st.integers(0, 0xFFFF),
    plen_b=st.integers(32, 64),
)
@settings(max_examples=EXAMPLES // 2)
def test_overlapping_ipv6_networks_are_refused(a, plen_a, b, plen_b, fuzz_tally):
    na = ipaddress.ip_network(f"2001:db8:{a:x}::/{plen_a}", strict=False)
    nb = ipaddress.ip_network(f"2001:db8:{b:x}::/{plen_b}", strict=False)
    pillar = {
        "networks": {
            "one": {"address6": f"{na.network_address + 1}/{plen_a}"},
            "two": {"address6": f"{nb.network_address + 1}/{plen_b}"},
        }
    }
    if na.overlaps(nb):
        rejected_at(pillar, "kvm:networks:two:address6", fuzz_tally, words="overlaps network 'one'")
    else:
        assert outcome(pillar, fuzz_tally) is None


@given(own=st.integers(1, 254), start=st.integers(0, 300), end=st.integers(0, 300))
@settings(max_examples=EXAMPLES)
def test_dhcp_ranges_outside_reversed_or_over_the_own_address_are_refused(
    own, start, end, fuzz_tally
):
    assume(start <= 255 and end <= 255)
    pillar = {
        "networks": {
            "n": {
                "address": f"198.51.100.{own}/24",
                "dhcp": {"start": f"198.51.100.{start}", "end": f"198.51.100.{end}"},
            }
        }
    }
    bad = start > end or start in (0, 255) or end in (0, 255) or start <= own <= end
    exc = outcome(pillar, fuzz_tally)
    if bad:
        assert exc is not None and any(
            p.startswith("kvm:networks:n:dhcp") for p, _ in exc.errors
        ), pillar
    else:
        assert exc is None, exc


@given(n=st.integers(2, 5), first=st.integers(0, 4))
@settings(max_examples=EXAMPLES // 4)
def test_a_port_in_two_bridges_or_a_bridge_as_port_is_refused(n, first, fuzz_tally):
    bridges = {f"br{i}": {"ports": [f"eno{i}"]} for i in range(n)}
    twice = {"bridges": {**bridges, "brx": {"ports": [f"eno{first % n}"]}}}
    rejected_at(twice, "kvm:bridges:brx:ports:0", fuzz_tally, words="already a port of bridge")
    nested = {"bridges": {**bridges, "brx": {"ports": [f"br{first % n}"]}}}
    rejected_at(nested, "kvm:bridges:brx:ports:0", fuzz_tally, words="is itself a bridge")


@given(n=st.integers(1, 6))
@settings(max_examples=EXAMPLES // 10)
def test_a_backing_loop_is_refused(n, fuzz_tally):
    vols = {f"v{i}.qcow2": {"backing": f"v{(i + 1) % n}.qcow2"} for i in range(n)}
    pillar = {"pools": {"p": {"type": "dir", "target": "/var/tmp/p", "volumes": vols}}}
    exc = outcome(pillar, fuzz_tally)
    assert exc is not None and any("backing" in m for _, m in exc.errors), exc


# --- fixed cases a fuzzer may take long to hit ----------------------------------------------


@pytest.mark.parametrize(
    "pillar,path",
    [
        ("", "kvm"),
        ([], "kvm"),
        (0, "kvm"),
        (False, "kvm"),
        ("bridges: {}", "kvm"),
        ({"bridges": {"br0": {"ports": {"eno1": {1: 2}}}}}, "kvm:bridges:br0:ports:0:1"),
        ({"bridges": {"br0": {"ports": {"eno1": "eno2"}}}}, "kvm:bridges:br0:ports:eno1"),
        ({"bridges": {"br0": {"mtu": 10**5000}}}, "kvm:bridges:br0:mtu"),
        (
            {
                "pools": {
                    "p": {"type": "dir", "target": "/x", "volumes": {"v": {"size": "9" * 400}}}
                }
            },
            "kvm:pools:p:volumes:v:size",
        ),
        (
            {
                "pools": {
                    "p": {
                        "type": "dir",
                        "target": "/x",
                        "volumes": {"v": {"size": "9" * 400 + "P"}},
                    }
                }
            },
            "kvm:pools:p:volumes:v:size",
        ),
        (
            {
                "pools": {
                    "p": {
                        "type": "dir",
                        "target": "/x",
                        "volumes": {"v": {"size": 1, "preallocation": 1}},
                    }
                }
            },
            "kvm:pools:p:volumes:v:preallocation",
        ),
        ({"pools": {"p": {"type": "dir", "target": "/x", "build": 1}}}, "kvm:pools:p:build"),
        ({"snapshots": {"vm": {"every": float("inf"), "keep": 1}}}, "kvm:snapshots:vm:every"),
        ({"snapshots": {"vm": {"every": "9" * 400, "keep": 1}}}, "kvm:snapshots:vm:every"),
        (
            {"snapshots": {"vm": {"every": "1d", "keep": 1, "older_than": float("inf")}}},
            "kvm:snapshots:vm:older_than",
        ),
        ({"bridges": {"br:0": {}}}, "kvm:bridges:br:0"),
        ({"bridges": {"br0": {"ports": ["eno1:1"]}}}, "kvm:bridges:br0:ports:0:name"),
        (
            {
                "bridges": {"br0": {"addresses": ["198.51.100.10/24"]}},
                "networks": {"n": {"address": "198.51.100.1/24"}},
            },
            "kvm:networks:n:address",
        ),
        (
            {
                "bridges": {"br0": {"addresses": ["2001:db8:5::10/64"]}},
                "networks": {"n": {"address6": "2001:db8:5::1/64"}},
            },
            "kvm:networks:n:address6",
        ),
        (
            {"bridges": {"br0": {"routes": [{"to": "2001:db8:aa::/48", "via": "192.0.2.1"}]}}},
            "kvm:bridges:br0:routes:0:via",
        ),
        (
            {"bridges": {"br0": {"routes": [{"to": "default", "via": "2001:db8::1"}]}}},
            "kvm:bridges:br0:routes:0:via",
        ),
        ({"bridges": {"br0": {"ports": {"eno1": {"name": "eno2"}}}}}, "kvm:bridges:br0:ports:eno1"),
        ({"bridges": {"-rf": {}}}, "kvm:bridges:-rf"),
        ({"bridges": {"br0": {"probe": {"tcp": "192.0.2.1:65536"}}}}, "kvm:bridges:br0:probe:tcp"),
        (
            {
                "pools": {
                    "p": {"type": "rbd", "source": {"hosts": ["127.0.0.1:99999"], "name": "rbd"}}
                }
            },
            "kvm:pools:p:source:hosts:0",
        ),
        (
            {
                "pools": {
                    "p": {"type": "rbd", "source": {"hosts": ["[2001:db8::1]:0"], "name": "rbd"}}
                }
            },
            "kvm:pools:p:source:hosts:0",
        ),
        (
            {
                "pools": {
                    "p": {"type": "fs", "target": "/x", "source": {"devices": ["-c/etc/passwd"]}}
                }
            },
            "kvm:pools:p:source:devices:0",
        ),
    ],
)
def test_known_edges(pillar, path, fuzz_tally):
    rejected_at(pillar, path, fuzz_tally)


def test_state_arguments_refuse_bad_names_the_same_way(fuzz_tally):
    """The states validate ``name`` with the same fields: the path is the name given."""
    for name in ["..", "a/b", "x y", "<x>", "it's", "", "é", "a" * 65]:
        fuzz_tally["tried"] += 1
        with pytest.raises(InvalidInput):
            schema.validate_args(
                schema.POOL, name, {"type": "dir", "target": "/x"}, name_field=schema.OBJNAME
            )
        fuzz_tally["rejected"] += 1
    for name in ["br:0", "x" * 16, "a/b", "..", ""]:
        fuzz_tally["tried"] += 1
        with pytest.raises(InvalidInput):
            schema.validate_args(schema.BRIDGE, name, {}, name_field=schema.IFNAME)
        fuzz_tally["rejected"] += 1


_SECRET_CHARS = "ZQXJzqxj0123456789ÆØ#%"
SECRETS = st.one_of(
    st.text(_SECRET_CHARS, min_size=6, max_size=40),
    st.integers(min_value=10**6),
    st.text(_SECRET_CHARS, min_size=4097, max_size=4200),
    st.lists(st.text(_SECRET_CHARS, min_size=6, max_size=10), min_size=1, max_size=2),
)


@given(
    secret=SECRETS,
    extra=st.sampled_from([{}, {"type": "chapp"}, {"username": "bad user"}, {"secret_usage": ""}]),
)
@settings(max_examples=EXAMPLES // 2)
def test_a_secret_is_never_shown_in_an_error(secret, extra, fuzz_tally):
    """Bad or not, the value of ``source:auth:secret`` never appears in a message (a numeric
    password too)."""
    auth = {"type": "chap", "username": "u", "secret": secret, **extra}
    pillar = {
        "pools": {
            "p": {
                "type": "iscsi",
                "target": "/dev/disk/by-path",
                "source": {
                    "hosts": ["192.0.2.5"],
                    "devices": ["iqn.2024-01.net.example:t"],
                    "auth": auth,
                },
            }
        }
    }
    exc = outcome(pillar, fuzz_tally)
    if exc is None:
        return
    shown = str(exc)
    for form in {str(secret), repr(secret), str(secret)[:20], repr(secret)[:20]}:
        if len(form) >= 6:
            assert form not in shown, shown
