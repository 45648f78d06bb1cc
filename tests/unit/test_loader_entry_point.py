import os

from salt_kvm import loader


def test_entry_point_finds_the_loader_modules():
    dirs = loader.get_loader_dirs()
    assert os.path.isfile(os.path.join(dirs["modules"][0], "kvm.py"))
    assert os.path.isfile(os.path.join(dirs["states"][0], "kvm.py"))
    # Salt's loader asks for outputters as ext_type "output"
    assert os.path.isfile(os.path.join(dirs["output"][0], "kvm.py"))


def test_entry_point_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("SALT_KVM_NO_ENTRY_POINT", "1")
    assert loader.get_loader_dirs() == {}
