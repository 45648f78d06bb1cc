"""The ``kvm`` grains through Salt's own grains loader (as a minion computes them)."""

import os
import sys
import time

import pytest

from salt_kvm import host


def test_kvm_grains_through_the_loader(loaders, conn):
    grains = loaders.grains
    assert set(grains["kvm"]) == {"hypervisor", "libvirt_version", "nested"}
    expected = "kvm" if os.path.exists("/dev/kvm") else "qemu"
    assert grains["kvm"]["hypervisor"] == expected
    major = conn.getLibVersion() // 1000000
    assert grains["kvm"]["libvirt_version"].startswith(f"{major}.")
    assert isinstance(grains["kvm"]["nested"], bool)


def test_grains_get_and_grain_targeting(loaders):
    """``grains.get kvm:hypervisor`` and the matcher behind ``salt -G 'kvm:hypervisor:kvm'``."""
    hypervisor = loaders.modules.grains.get("kvm:hypervisor")
    assert hypervisor in ("kvm", "qemu")
    assert loaders.modules.match.grain(f"kvm:hypervisor:{hypervisor}") is True
    assert loaders.modules.match.grain("kvm:hypervisor:none") is False


def test_grains_are_cheap_and_open_no_connection(monkeypatch):
    import libvirt  # pylint: disable=import-outside-toplevel

    def refuse(*_a, **_k):
        raise AssertionError("the grains must not connect to libvirtd")

    for name in ("open", "openReadOnly", "openAuth"):
        monkeypatch.setattr(libvirt, name, refuse)
    start = time.perf_counter()
    for _ in range(20):
        host.grains()
    assert (time.perf_counter() - start) / 20 < 0.05


def test_grains_without_libvirt_bindings(monkeypatch):
    import importlib.util  # pylint: disable=import-outside-toplevel

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "libvirt" else real(name, *a)
    )
    monkeypatch.delitem(sys.modules, "libvirt", raising=False)
    assert host.grains() == {"hypervisor": "none", "libvirt_version": None, "nested": host.nested()}


@pytest.mark.parametrize("device", [True, False], ids=["kvm-device", "no-kvm-device"])
def test_hypervisor_follows_dev_kvm(monkeypatch, device):
    monkeypatch.setattr(host, "has_kvm_device", lambda: device)
    monkeypatch.setattr(
        os.path,
        "exists",
        lambda p, _real=os.path.exists: True if p.startswith("/usr/bin/qemu-system-") else _real(p),
    )
    assert host.grains()["hypervisor"] == ("kvm" if device else "qemu")
