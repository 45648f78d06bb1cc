"""Persistence renderers (ifupdown, networkd, NetworkManager): golden files, idempotence,
the real parsers where Debian has them, and ``persist: auto`` detection.

Regenerate the golden files after an intended change with
``KVT_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_persist.py``.
"""

import os
import pathlib
import shutil
import subprocess

import pytest

from salt_kvm import persist
from salt_kvm.errors import KvmError
from salt_kvm.persist import ifupdown

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "persist"

SPECS = {
    # the uplink eno1 handed its address and default route to br0
    "uplink": {
        "name": "br0",
        "ports": [{"name": "eno1"}],
        "stp": False,
        "forward_delay": 0,
        "mtu": 1500,
        "addresses": ["192.0.2.10/24", "2001:db8::10/64"],
        "gateway": "192.0.2.1",
        "gateway6": "2001:db8::1",
        "routes": [{"to": "198.51.100.0/24", "via": "192.0.2.254", "metric": 100}],
        "mac": "52:54:00:12:34:56",
        "vlan_ports": {},
    },
    # a VLAN-aware switch for VMs: a trunk, an access port, a VLAN sub-interface, STP
    "trunk": {
        "name": "br1",
        "ports": [
            {"name": "eno2", "cost": 4, "vlans": {"tagged": [100, 101, 102, 200]}},
            {"name": "eno3", "priority": 16, "hairpin": True, "vlans": {"pvid": 100}},
            {"name": "eno4.300"},
        ],
        "stp": True,
        "forward_delay": 4,
        "hello_time": 1.5,
        "max_age": 12,
        "ageing_time": 300,
        "priority": 4096,
        "vlan_filtering": True,
        "default_pvid": 1,
        "mcast_snooping": False,
        "addresses": [],
        "gateway": None,
        "gateway6": None,
        "routes": [],
        "mac": None,
        "vlan_ports": {"eno4.300": {"parent": "eno4", "id": 300}},
    },
    # default routes in routes: written as 0.0.0.0/0 and ::/0, never the word "default"
    "routes": {
        "name": "br2",
        "ports": [{"name": "eno5"}],
        "addresses": ["198.51.100.5/24", "2001:db8:5::5/64"],
        "gateway": "198.51.100.1",
        "gateway6": None,
        "routes": [
            {"to": "default", "via": "198.51.100.2", "metric": 500},
            {"to": "::/0", "via": "2001:db8:5::1", "metric": 700},
            {"to": "203.0.113.0/24", "metric": 10},
            {"to": "2001:db8:6::/64", "via": "2001:db8:5::1"},
        ],
        "mac": None,
        "vlan_ports": {},
    },
}


def _render(backend, spec, root):
    files = persist.render(backend, spec, root=str(root))
    return {os.path.relpath(path, root): content for path, content in files.items()}


@pytest.mark.parametrize("backend", persist.BACKENDS)
@pytest.mark.parametrize("case", sorted(SPECS))
def test_golden(backend, case, tmp_path):
    files = _render(backend, SPECS[case], tmp_path)
    directory = GOLDEN / backend / case
    if os.environ.get("KVT_REGEN_GOLDEN"):
        shutil.rmtree(directory, ignore_errors=True)
        for rel, content in files.items():
            target = directory / rel.replace("/", "__")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
    expected = {p.name.replace("__", "/"): p.read_text() for p in directory.iterdir()}
    assert files == expected


@pytest.mark.parametrize("backend", persist.BACKENDS)
def test_write_is_idempotent_and_restorable(backend, tmp_path):
    files = persist.render(backend, SPECS["uplink"], root=str(tmp_path))
    assert set(persist.pending(files).values()) == {"missing"}
    backup = persist.write(files)
    assert persist.pending(files) == {}
    assert persist.write(files) == {}, "a second write changed something"
    if backend == "networkmanager":
        for path in files:
            assert os.stat(path).st_mode & 0o777 == 0o600
    persist.restore(backup)
    assert not any(os.path.exists(p) for p in files)


def test_remove_only_touches_our_files(tmp_path):
    persist.write(persist.render("networkd", SPECS["uplink"], root=str(tmp_path)))
    other = tmp_path / "etc/systemd/network/20-wired.network"
    other.write_text("[Match]\nName=eno9\n")
    removed = persist.remove("networkd", "br0", root=str(tmp_path))
    assert len(removed) == 3
    assert [p.name for p in (tmp_path / "etc/systemd/network").iterdir()] == ["20-wired.network"]


MAIN = """# The primary network interface
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug eno1
auto eno1 eno9
iface eno1 inet static
    address 192.0.2.10/24
    gateway 192.0.2.1
    # a comment inside the stanza

iface eno9 inet dhcp
"""


def test_ifupdown_comments_out_the_uplink_stanza_once(tmp_path):
    changed = ifupdown.disable_ports(MAIN, ["eno1"])
    assert "# salt-kvm: iface eno1 inet static" in changed
    assert "# salt-kvm:     address 192.0.2.10/24" in changed
    assert "\nauto eno9\n" in changed and "\niface eno9 inet dhcp\n" in changed
    assert "# salt-kvm: allow-hotplug eno1" in changed
    assert ifupdown.disable_ports(changed, ["eno1"]) == changed


@pytest.mark.skipif(
    not shutil.which("ifquery"), reason="ifquery (Debian package ifupdown) is not installed"
)
@pytest.mark.parametrize("case", sorted(SPECS))
def test_ifupdown_output_parses_with_ifquery(case, tmp_path):
    (tmp_path / "etc/network").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").write_text(
        MAIN.replace("source /etc/network/interfaces.d/*\n", "")
    )
    files = _render("ifupdown", SPECS[case], tmp_path)
    combined = tmp_path / "combined"
    combined.write_text(
        "\n".join(files[k] for k in sorted(files, key=lambda k: k != "etc/network/interfaces"))
    )
    name = SPECS[case]["name"]
    out = subprocess.run(
        ["ifquery", "-i", str(combined), name], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "bridge_ports: " + " ".join(p["name"] for p in SPECS[case]["ports"]) in out.stdout
    listed = subprocess.run(
        ["ifquery", "-i", str(combined), "--list", "--allow=auto"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert name in listed and all(p["name"] in listed for p in SPECS[case]["ports"])
    if case == "uplink":
        assert (
            "eno1"
            not in subprocess.run(
                ["ifquery", "-i", str(combined), "--list"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split("\n")[:0]
        )
        assert "address: 192.0.2.10" in out.stdout and "gateway: 192.0.2.1" in out.stdout


@pytest.mark.kernel
@pytest.mark.skipif(
    not shutil.which("nmcli"),
    reason=(
        "nmcli (Debian package network-manager) is not installed; make test-kernel installs it "
        "and runs this test"
    ),
)
@pytest.mark.parametrize("case", sorted(SPECS))
def test_networkmanager_keyfiles_parse_with_nmcli_offline(case, tmp_path):
    for path, content in _render("networkmanager", SPECS[case], tmp_path).items():
        out = subprocess.run(
            ["nmcli", "--offline", "connection", "modify", "connection.autoconnect", "yes"],
            input=content,
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, f"{path}: {out.stderr}"


def test_default_route_is_written_as_a_prefix():
    from salt_kvm.persist import _common  # pylint: disable=import-outside-toplevel

    assert _common.destination({"to": "default"}) == "0.0.0.0/0"
    assert _common.destination({"to": "default", "via": "2001:db8::1"}) == "::/0"
    v4, v6 = _common.split_routes(
        [{"to": "default", "via": "2001:db8::1"}, {"to": "default", "via": "192.0.2.1"}]
    )
    assert [r["via"] for r in v4] == ["192.0.2.1"] and [r["via"] for r in v6] == ["2001:db8::1"]
    for backend in persist.BACKENDS:
        text = "".join(persist.render(backend, SPECS["routes"], root="/nonexistent").values())
        assert "0.0.0.0/0" in text and "::/0" in text
        assert (
            "=default" not in text
            and "replace default" not in text
            and "Destination=default" not in text
        )


def test_detect(tmp_path):
    with pytest.raises(KvmError, match="found no network configuration system"):
        persist.detect(str(tmp_path))
    (tmp_path / "etc/network").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").write_text("auto lo\n")
    assert persist.detect(str(tmp_path)) == "ifupdown"
    (tmp_path / "etc/systemd/network").mkdir(parents=True)
    (tmp_path / "etc/systemd/network/10-eth.network").write_text("[Match]\n")
    assert persist.detect(str(tmp_path)) == "networkd"
    (tmp_path / "etc/NetworkManager").mkdir(parents=True)
    (tmp_path / "run/NetworkManager").mkdir(parents=True)
    assert persist.detect(str(tmp_path)) == "networkmanager"
