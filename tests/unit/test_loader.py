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


def test_formula_root_holds_the_formula():
    """From a checkout it is the checkout; the wheel's copy is checked by
    tests/integration/test_wheel_install.py."""
    root = loader.formula_root()
    assert root and os.path.isfile(os.path.join(root, "kvm", "init.sls"))
    for part in ("bridges", "networks", "storage", "snapshots"):
        assert os.path.isfile(os.path.join(root, "kvm", f"{part}.sls"))


def test_formula_root_prefers_the_packaged_copy(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "salt_kvm"
    (package / "file_root" / "kvm").mkdir(parents=True)
    (package / "file_root" / "kvm" / "init.sls").write_text("include: []\n")
    monkeypatch.setattr(loader, "__file__", str(package / "loader.py"))
    assert loader.formula_root() == str(package / "file_root")
    (package / "file_root" / "kvm" / "init.sls").unlink()
    assert loader.formula_root() is None
