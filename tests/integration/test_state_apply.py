"""A real salt-master and minion (pytest-salt-factories): ``state.apply kvm``
with a pillar, results checked on the host itself."""

import pytest
import yaml
from saltfactories.utils import random_string

from tests.support import sandbox
from tests.support.saltcall import changed, repo_file_root, state_results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pillar_tree(tmp_path_factory):
    return tmp_path_factory.mktemp("pillar")


@pytest.fixture(scope="module")
def salt_master(salt_factories, pillar_tree, tmp_path_factory):
    factory = salt_factories.salt_master_daemon(
        random_string("kvt-master-"),
        overrides={
            "file_roots": {"base": [str(repo_file_root(tmp_path_factory.mktemp("file-root")))]},
            "pillar_roots": {"base": [str(pillar_tree)]},
        },
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def salt_minion(salt_master):
    factory = salt_master.salt_minion_daemon(random_string("kvt-minion-"))
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def salt_cli(salt_master):
    return salt_master.salt_cli(timeout=300)


@pytest.fixture
def set_pillar(pillar_tree, salt_cli, salt_minion):
    def write(kvm):
        (pillar_tree / "top.sls").write_text(yaml.safe_dump({"base": {salt_minion.id: ["kvm"]}}))
        (pillar_tree / "kvm.sls").write_text(yaml.safe_dump({"kvm": kvm}))
        ret = salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=salt_minion.id)
        assert ret.returncode == 0, ret

    return write


@pytest.fixture
def pool_name(conn):
    name = sandbox.uid("ip-")
    yield name
    sandbox.sweep(only_mine=True)


def test_state_apply_kvm_converges_then_changes_nothing(
    salt_cli, salt_minion, set_pillar, pool_name, conn
):
    target = sandbox.files_dir(pool_name)
    set_pillar({"pools": {pool_name: {"type": "dir", "target": target, "autostart": True}}})

    # test=True first: predicts, changes nothing
    ret = salt_cli.run("state.apply", "kvm", "test=True", minion_tgt=salt_minion.id)
    results = state_results(ret.data)
    assert results[f"kvm-pool-{pool_name}"]["result"] is None
    assert results[f"kvm-pool-{pool_name}"]["changes"]
    assert pool_name not in [p.name() for p in conn.listAllStoragePools(0)]

    ret = salt_cli.run("state.apply", "kvm", minion_tgt=salt_minion.id)
    assert ret.returncode == 0, ret
    results = state_results(ret.data)
    assert results[f"kvm-pool-{pool_name}"]["result"] is True
    pool = conn.storagePoolLookupByName(pool_name)
    assert pool.isActive() and pool.autostart()

    ret = salt_cli.run("state.apply", "kvm", minion_tgt=salt_minion.id)
    assert ret.returncode == 0, ret
    assert changed(ret.data) == {}
    assert all(r["result"] is True for r in state_results(ret.data).values())


def test_bad_pillar_fails_before_anything_changes(
    salt_cli, salt_minion, set_pillar, pool_name, conn
):
    target = sandbox.files_dir(pool_name)
    set_pillar(
        {
            "pools": {
                pool_name: {
                    "type": "dir",
                    "target": target,
                    "volumes": {"ubuntu.qcow2": {"size": "20X"}},
                }
            },
        }
    )
    for sls in ("kvm", "kvm.storage", "kvm.bridges"):
        ret = salt_cli.run("state.apply", sls, minion_tgt=salt_minion.id)
        assert ret.returncode != 0
        text = str(ret.data) + ret.stdout
        assert f"kvm:pools:{pool_name}:volumes:ubuntu.qcow2:size: '20X' is not a size" in text, text
    assert pool_name not in [p.name() for p in conn.listAllStoragePools(0)]
