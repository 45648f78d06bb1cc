"""Both ways users get the modules work, from one copy of each loader module.

(a) the package installed with pip: the ``salt.loader`` entry point makes
``kvm`` available with no sync; (b) the repository as a Salt file root:
``saltutil.sync_all`` brings ``_modules``/``_states`` and ``state.apply kvm``
finds the formula. Both run the real ``salt-call``.
"""

import subprocess
import sys

from tests.conftest import REPO
from tests.support import sandbox
from tests.support.saltcall import SaltCall, repo_file_root, state_results

EXPECTED = {"kvm.host_info", "kvm.validate_pillar", "kvm.render_formula"}


def installed_copy():
    """The loader module file that the installed distribution carries (not the checkout's)."""
    code = "import salt_kvm.loader as l, json; print(json.dumps(l.get_loader_dirs()))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True
    ).stdout
    return out


def test_pip_installed_package_needs_no_sync(tmp_path):
    dirs = installed_copy()
    assert "loader_modules" in dirs, (
        f"salt-kvm is not installed in this venv (run make test): {dirs}"
    )
    call = SaltCall(tmp_path)
    code, functions, err = call.run("sys.list_functions", "kvm")
    assert code == 0, err
    assert EXPECTED <= set(functions)
    # the outputter comes with the package too: --out=kvm prints a table (or says there is nothing)
    assert "loader_output" in dirs, dirs
    code, text, err = call.run("kvm.pool_list", out="kvm")
    assert code == 0, err
    assert text.startswith("local:\n") and ("    POOL  " in text or "no storage pools" in text), (
        text
    )
    # nothing was synced: the functions come from the installed package
    assert not list((tmp_path / "cache").rglob("kvm.py"))


def test_repository_as_file_root_with_sync_all(tmp_path, conn):
    """The repository's tracked files as the file root (as gitfs serves them)."""
    pool = sandbox.uid("fr-")
    target = sandbox.files_dir(pool)
    call = SaltCall(
        tmp_path,
        file_roots=[repo_file_root(tmp_path / "file-root")],
        pillar={"pools": {pool: {"type": "dir", "target": target, "autostart": False}}},
        env={"SALT_KVM_NO_ENTRY_POINT": "1", "PYTHONPATH": str(REPO)},
    )
    code, functions, _ = call.run("sys.list_functions", "kvm")
    assert not functions or not EXPECTED & set(functions), "entry point should be off in this test"
    code, synced, err = call.run("saltutil.sync_all")
    assert code == 0, err
    assert "modules.kvm" in synced["modules"] and "states.kvm" in synced["states"]
    assert "output.kvm" in synced["output"], synced
    code, functions, err = call.run("sys.list_functions", "kvm")
    assert EXPECTED <= set(functions), err
    try:
        code, data, err = call.run("state.apply", "kvm")
        assert code == 0, (data, err)
        results = state_results(data)
        assert results[f"kvm-pool-{pool}"]["result"] is True
        assert conn.storagePoolLookupByName(pool).isActive()
        # the synced outputter: the pool as a table row
        code, text, err = call.run("kvm.pool_list", out="kvm")
        assert code == 0, err
        line = next(ln for ln in text.splitlines() if ln.split()[:1] == [pool])
        assert line.split()[1:4] == ["dir", "running", "no"] and line.rstrip().endswith(target), (
            text
        )
    finally:
        sandbox.sweep(only_mine=True)


def test_missing_dependency_gives_a_reason_not_a_trace(tmp_path):
    """``__virtual__`` explains what to install when libvirt-python is missing."""
    hide = tmp_path / "hide"
    hide.mkdir()
    # sys.modules[name] = None makes both "import libvirt" and find_spec("libvirt") fail
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['libvirt'] = None\n")
    call = SaltCall(tmp_path / "salt", env={"PYTHONPATH": str(hide)})
    code, out, err = call.run("kvm.host_info", out=None)
    assert code != 0
    text = out + err
    assert "libvirt-python not installed; install salt-kvm with pip / salt-pip" in text, text
    assert "Traceback" not in text
