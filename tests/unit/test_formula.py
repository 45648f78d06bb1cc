import pytest

from salt_kvm import formula
from salt_kvm.errors import InvalidInput

PILLAR = {
    "bridges": {"br0": {"ports": ["eno1"], "stp": False}, "old": {"absent": True}},
    "networks": {"lan": {"mode": "bridge", "bridge": "br0"}},
    "pools": {
        "default": {
            "type": "dir",
            "target": "/var/lib/libvirt/images",
            "volumes": {
                "web01.qcow2": {"size": "20G", "backing": "base.img"},
                "base.img": {"size": "10G"},
            },
        }
    },
    "snapshots": {"web01": {"every": "1d", "keep": 7}},
}


def test_storage_renders_backing_volumes_first_and_requires_the_pool():
    states = formula.render("storage", PILLAR)
    ids = list(states)
    assert ids == [
        "kvm-pool-default",
        "kvm-volume-default-base.img",
        "kvm-volume-default-web01.qcow2",
    ]
    web = states["kvm-volume-default-web01.qcow2"]["kvm.volume_present"]
    assert {"pool": "default"} in web and {"size": 20 * 1024**3} in web
    require = [item for item in web if "require" in item][0]["require"]
    assert {"kvm": "kvm-pool-default"} in require and {
        "kvm": "kvm-volume-default-base.img"
    } in require


def test_bridges_render_present_and_absent():
    states = formula.render("bridges", PILLAR)
    assert "kvm.bridge_present" in states["kvm-bridge-br0"]
    assert "kvm.bridge_absent" in states["kvm-bridge-old"]


def test_snapshots_render_retention():
    states = formula.render("snapshots", PILLAR)
    body = states["kvm-snapshots-web01"]["kvm.snapshots_retained"]
    assert {"name": "web01"} in body and {"keep": 7} in body and {"every": 86400.0} in body


def test_a_bad_value_anywhere_fails_every_part():
    bad = dict(PILLAR, snapshots={"web01": {"every": "1d", "keep": "seven"}})
    for part in formula.PARTS:
        with pytest.raises(InvalidInput) as err:
            formula.render(part, bad)
        assert "kvm:snapshots:web01:keep" in str(err.value)


def test_a_bad_pillar_renders_one_failing_state_per_part_with_the_path():
    bad = dict(PILLAR, snapshots={"web01": {"every": "1d", "keep": "seven"}})
    for part in formula.PARTS:
        states = formula.render_or_fail(part, bad)
        assert list(states) == [f"kvm-pillar-{part}"]
        body = states[f"kvm-pillar-{part}"]["kvm.pillar_invalid"]
        message = [item["message"] for item in body if "message" in item][0]
        assert message.startswith("kvm:snapshots:web01:keep: 'seven' is not a whole number")
    assert formula.render_or_fail("storage", PILLAR) == formula.render("storage", PILLAR)


def test_init_renders_the_parts_or_one_state_for_a_bad_or_missing_pillar():
    assert formula.render_init(PILLAR) == {
        "include": ["kvm.bridges", "kvm.networks", "kvm.storage", "kvm.vms", "kvm.snapshots"]
    }
    bad = dict(
        PILLAR,
        snapshots={"web01": {"every": "1d", "keep": "seven"}},
        bridges={"br0": {"stp": "maybe"}},
    )
    states = formula.render_init(bad)
    assert list(states) == ["kvm-pillar"]
    message = [
        item["message"] for item in states["kvm-pillar"]["kvm.pillar_invalid"] if "message" in item
    ][0]
    # every error on its own line, after a count
    assert message.splitlines() == [
        "2 errors:",
        "kvm:bridges:br0:stp: 'maybe' is not true or false",
        "kvm:snapshots:web01:keep: 'seven' is not a whole number",
    ]
    for missing in (None, {}):
        states = formula.render_init(missing)
        assert list(states) == ["kvm-pillar"] and "kvm.pillar_missing" in states["kvm-pillar"]
        message = [
            item["message"]
            for item in states["kvm-pillar"]["kvm.pillar_missing"]
            if "message" in item
        ][0]
        assert message.startswith("this minion has no kvm pillar") and "pillar.example" in message


def test_all_renders_every_part_in_order():
    states = formula.render("all", PILLAR)
    expected = {}
    for part in formula.PARTS:
        expected.update(formula.render(part, PILLAR))
    assert list(states) == list(expected) and states == expected
    with pytest.raises(InvalidInput) as err:
        formula.render("everything", PILLAR)
    assert "'everything' is not one of bridges, networks, storage, vms, snapshots, all" in str(
        err.value
    )


def test_vms_render_after_what_they_use_and_before_their_snapshots():
    pillar = {
        "bridges": {"br0": {"stp": False}},
        "pools": {
            "default": {
                "type": "dir",
                "target": "/srv/images",
                "volumes": {"web01.qcow2": {"size": "1G"}},
            }
        },
        "vms": {
            "web01": {
                "memory": "1G",
                "vcpus": 1,
                "disks": [{"pool": "default", "volume": "web01.qcow2"}],
                "nics": [{"bridge": "br0"}],
                "state": "stopped",
            },
            "old01": {"memory": "1G", "vcpus": 1, "absent": True, "purge": True},
        },
        "snapshots": {"web01": {"every": "1d", "keep": 7}},
    }
    vms = formula.render("vms", pillar)
    body = vms["kvm-vm-web01"]["kvm.vm_present"]
    assert {"run_state": "stopped"} in body and not any("state" in item for item in body)
    requires = [item["require"] for item in body if "require" in item][0]
    assert {"kvm": "kvm-volume-default-web01.qcow2"} in requires and {
        "kvm": "kvm-bridge-br0"
    } in requires
    assert vms["kvm-vm-old01"] == {"kvm.vm_absent": [{"name": "old01"}, {"purge": True}]}
    snaps = formula.render("snapshots", pillar)["kvm-snapshots-web01"]["kvm.snapshots_retained"]
    assert {"require": [{"kvm": "kvm-vm-web01"}]} in snaps


def test_two_vms_cannot_share_a_mac_or_a_disk():
    vm = {
        "memory": "1G",
        "vcpus": 1,
        "disks": [{"pool": "p", "volume": "v"}],
        "nics": [{"bridge": "br0", "mac": "52:54:00:00:00:01"}],
    }
    with pytest.raises(InvalidInput) as err:
        formula.render("vms", {"vms": {"a": vm, "b": vm}})
    text = str(err.value)
    assert "kvm:vms:b:nics:0: MAC 52:54:00:00:00:01 is already used by VM 'a'" in text
    assert "kvm:vms:b:disks:0: volume p/v is already a disk of VM 'a'" in text


def test_a_vm_disk_can_make_its_volume_on_a_base_declared_here():
    pillar = {
        "pools": {
            "default": {
                "type": "dir",
                "target": "/srv/images",
                "volumes": {"base.qcow2": {"size": "1G"}, "gone.qcow2": {"absent": True}},
            }
        },
        "vms": {
            "web01": {
                "memory": "1G",
                "vcpus": 1,
                "max_memory": "2G",
                "max_vcpus": 4,
                "disks": [
                    {"pool": "default", "volume": "web01.qcow2", "backing": "base.qcow2"},
                    {"pool": "default", "volume": "data.raw", "size": "10G", "format": "raw"},
                ],
                "nics": [{"network": "default", "link": "down"}],
            }
        },
    }
    tree = formula.render("vms", pillar)
    body = tree["kvm-vm-web01"]["kvm.vm_present"]
    requires = [item["require"] for item in body if "require" in item][0]
    assert {"kvm": "kvm-volume-default-base.qcow2"} in requires and {
        "kvm": "kvm-pool-default"
    } in requires
    assert {
        "disks": [
            {"pool": "default", "volume": "web01.qcow2", "backing": "base.qcow2"},
            {"pool": "default", "volume": "data.raw", "size": 10 * 1024**3, "format": "raw"},
        ]
    } in body
    bad = {
        "pools": pillar["pools"],
        "vms": {
            "web01": {
                "memory": "1G",
                "vcpus": 1,
                "disks": [
                    {"pool": "default", "volume": "base.qcow2", "size": "1G"},
                    {"pool": "default", "volume": "x.qcow2", "backing": "gone.qcow2"},
                ],
            }
        },
    }
    with pytest.raises(InvalidInput) as err:
        formula.render("vms", bad)
    text = str(err.value)
    assert (
        "kvm:vms:web01:disks:0:volume: default/base.qcow2 is also declared under "
        "kvm:pools:default:volumes" in text
    )
    assert "kvm:vms:web01:disks:1:backing: default/gone.qcow2 is declared absent" in text
    with pytest.raises(
        InvalidInput, match="kvm:vms:web01:disks:0:format: must be qcow2 with backing"
    ):
        formula.render(
            "vms",
            {
                "vms": {
                    "web01": {
                        "memory": "1G",
                        "vcpus": 1,
                        "disks": [
                            {
                                "pool": "default",
                                "volume": "y.qcow2",
                                "backing": "base.qcow2",
                                "format": "raw",
                            }
                        ],
                    }
                }
            },
        )
    with pytest.raises(InvalidInput, match="kvm:vms:web01:memory: is more than max_memory"):
        formula.render("vms", {"vms": {"web01": {"memory": "2G", "max_memory": "1G", "vcpus": 1}}})
