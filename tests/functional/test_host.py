import os

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError


def test_host_info_reports_the_real_host(kvm, conn):
    info = kvm.host_info()
    assert info["kvm_device"] == os.path.exists("/dev/kvm")
    assert info["hypervisor"] in ("kvm", "qemu")
    major = conn.getLibVersion() // 1000000
    assert info["libvirt_version"].startswith(f"{major}.")
    assert info["cpu"]["count"] >= 1
    assert info["memory"]["total"] > 0
    for key in ("images", "pool_definitions", "vm_definitions", "snapshot_metadata"):
        assert info["paths"][key].startswith("/")


def test_validate_pillar_names_the_path(kvm):
    bad = {
        "pools": {
            "default": {"type": "dir", "target": "/x", "volumes": {"ubuntu.qcow2": {"size": "20X"}}}
        }
    }
    with pytest.raises(CommandExecutionError) as err:
        kvm.validate_pillar(bad)
    # a bad pillar is not a bad argument: salt-call prints no usage text for it
    assert not isinstance(err.value, SaltInvocationError)
    assert "kvm:pools:default:volumes:ubuntu.qcow2:size: '20X' is not a size" in str(err.value)


def test_render_formula_is_empty_for_an_empty_pillar(kvm):
    for part in ("bridges", "networks", "storage", "snapshots"):
        assert kvm.render_formula(part, {}) == {}
