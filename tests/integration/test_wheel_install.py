"""The install README.md documents, end to end, without the checkout.

``make dist``'s wheel (built from its sdist, as ``make dist`` does) is
installed into a venv of its own, not the dev venv: the minion runs that venv's
``salt-minion``, so ``kvm`` and the ``kvm`` formula come from the wheel alone.
The master learns where the formula is from the documented command
(``salt-run kvm.formula_root``, run by the same venv) and serves it as a file
root; ``salt MINION state.apply kvm`` then applies a tiny pillar (a dir pool)
through the real master, twice.

The minion venv is kept in ``.venv-minion`` between runs (salt and the other
dependencies take about 90 s to install the first time); each run uninstalls
``salt-kvm`` from it and installs the freshly built wheel, so nothing of a
former build is left in it.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import attr
import pytest
import yaml
from saltfactories.daemons.minion import SaltMinion
from saltfactories.utils import random_string

from tests.conftest import REPO
from tests.support import sandbox
from tests.support.saltcall import changed, state_results

pytestmark = pytest.mark.slow

MINION_VENV = REPO / ".venv-minion"


@attr.s(kw_only=True, slots=True)
class VenvMinion(SaltMinion):
    """A salt-minion run by another venv's own ``salt-minion`` script (not the
    generated script of salt-factories, which puts the checkout on ``sys.path``)."""

    venv = attr.ib(default=None)

    def cmdline(self, *args):  # pylint: disable=arguments-differ
        cmdline = super().cmdline(*args)
        script = next(
            i
            for i, arg in enumerate(cmdline)
            if "salt_minion" in str(arg) or str(arg).endswith("salt-minion")
        )
        return [str(pathlib.Path(self.venv) / "bin" / "salt-minion")] + list(cmdline[script + 1 :])


def _run(*cmd, **kwargs):
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=False, cwd="/", **kwargs
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} -> "
        f"{proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """``make dist`` into a directory of the test's own: the sdist, and the wheel built from it."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO)
    wheels = list(out.glob("salt_kvm-*-py3-none-any.whl"))
    assert len(wheels) == 1 and list(out.glob("salt_kvm-*.tar.gz")), sorted(out.iterdir())
    return wheels[0]


@pytest.fixture(scope="module")
def minion_venv(wheel):
    """A venv with salt and the wheel installed from it (and nothing from the checkout)."""
    python = MINION_VENV / "bin" / "python"
    if not python.exists():
        base = getattr(sys, "_base_executable", None) or shutil.which("python3")
        _run(base, "-m", "venv", MINION_VENV)
        _run(python, "-m", "pip", "install", "-q", "-U", "pip")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    _run(python, "-m", "pip", "uninstall", "-q", "-y", "salt-kvm", env=env)
    # the wheel with its dependencies (libvirt-python, pyroute2, lxml), and salt itself
    _run(python, "-m", "pip", "install", "-q", wheel, "salt", env=env)
    where = _run(
        python,
        "-c",
        "import salt_kvm, salt; print(salt_kvm.__file__); print(salt.__file__)",
        env=env,
    ).split()
    assert all(path.startswith(str(MINION_VENV)) for path in where), where
    return MINION_VENV


@pytest.fixture(scope="module")
def formula_root(minion_venv, tmp_path_factory):
    """What ``salt-run kvm.formula_root`` prints on a master with the wheel installed."""
    conf = tmp_path_factory.mktemp("runner-conf")
    (conf / "cache" / "proc").mkdir(parents=True)
    (conf / "master").write_text(
        yaml.safe_dump(
            {
                "root_dir": str(conf),
                "pki_dir": str(conf / "pki"),
                "cachedir": str(conf / "cache"),
                "sock_dir": str(conf / "sock"),
                "log_file": str(conf / "master.log"),
            }
        )
    )
    out = _run(
        minion_venv / "bin" / "salt-run",
        "-c",
        conf,
        "--out=json",
        "-l",
        "quiet",
        "kvm.formula_root",
    )
    path = json.loads(out)
    assert path.startswith(str(minion_venv)) and path.endswith("salt_kvm/file_root"), path
    assert sorted(os.listdir(os.path.join(path, "kvm"))) == [
        "bridges.sls",
        "init.sls",
        "networks.sls",
        "snapshots.sls",
        "storage.sls",
        "vms.sls",
    ]
    return path


@pytest.fixture(scope="module")
def pillar_tree(tmp_path_factory):
    return tmp_path_factory.mktemp("wheel-pillar")


@pytest.fixture(scope="module")
def master(salt_factories, formula_root, pillar_tree):
    factory = salt_factories.salt_master_daemon(
        random_string("kvt-whl-master-"),
        overrides={
            "file_roots": {"base": [formula_root]},
            "pillar_roots": {"base": [str(pillar_tree)]},
        },
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def minion(master, minion_venv):
    factory = master.salt_minion_daemon(
        random_string("kvt-whl-minion-"), factory_class=VenvMinion, venv=str(minion_venv)
    )
    with factory.started():
        yield factory


def test_wheel_installed_minion_applies_the_formula(master, minion, pillar_tree, conn):
    cli = master.salt_cli(timeout=300)
    # the minion runs on the clean venv's Python, where salt_kvm is only the wheel's
    ret = cli.run("grains.get", "pythonexecutable", minion_tgt=minion.id)
    assert str(ret.data).startswith(str(MINION_VENV)), ret
    ret = cli.run("sys.list_functions", "kvm", minion_tgt=minion.id)
    assert ret.returncode == 0 and "kvm.host_info" in ret.data, ret

    pool = sandbox.uid("whl-")
    target = sandbox.files_dir(pool)
    (pillar_tree / "top.sls").write_text(yaml.safe_dump({"base": {minion.id: ["kvm"]}}))
    (pillar_tree / "kvm.sls").write_text(
        yaml.safe_dump(
            {"kvm": {"pools": {pool: {"type": "dir", "target": target, "autostart": False}}}}
        )
    )
    try:
        assert cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=minion.id).returncode == 0
        ret = cli.run("state.apply", "kvm", "test=True", minion_tgt=minion.id)
        assert state_results(ret.data)[f"kvm-pool-{pool}"]["result"] is None, ret
        assert pool not in [p.name() for p in conn.listAllStoragePools(0)]

        ret = cli.run("state.apply", "kvm", minion_tgt=minion.id)
        assert ret.returncode == 0, ret
        assert state_results(ret.data)[f"kvm-pool-{pool}"]["result"] is True, ret
        assert conn.storagePoolLookupByName(pool).isActive()

        ret = cli.run("state.apply", "kvm", minion_tgt=minion.id)
        assert ret.returncode == 0 and changed(ret.data) == {}, ret
    finally:
        sandbox.remove_named([pool])
