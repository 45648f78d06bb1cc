"""A real salt-master and minion: the progress of a volume import and clone run on
the minion reaches the master's event bus, where ``salt-run state.event`` shows it."""

import contextlib
import json
import os
import re
import threading
import time

import pytest
from saltfactories.utils import random_string

from tests.support import sandbox, slow_http

pytestmark = pytest.mark.slow

M = 1024**2
SIZE = 64 * M
EVENT = re.compile(r"^(salt/kvm/progress/\S+)\s+(\{.*\})\s*$")


@pytest.fixture(scope="module")
def salt_master(salt_factories):
    factory = salt_factories.salt_master_daemon(random_string("kvt-pmaster-"))
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def salt_minion(salt_master):
    # a short interval so that a 2 s import reports several times
    factory = salt_master.salt_minion_daemon(
        random_string("kvt-pminion-"), overrides={"kvm": {"progress": {"interval": 0.2}}}
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def salt_cli(salt_master):
    return salt_master.salt_cli(timeout=300)


@pytest.fixture
def slow_url():
    with slow_http.slow_image_url(SIZE) as url:
        yield url


class Listener:
    """``salt-run state.event tagmatch=TAG count=N`` on the master, in a thread."""

    def __init__(self, master, tagmatch, count, timeout=120):
        self.cli = master.salt_run_cli(timeout=timeout)
        self.args = ("state.event", f"tagmatch={tagmatch}", f"count={count}")
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        time.sleep(4)  # salt-run starts and subscribes before the work begins

    def _run(self):
        self.result = self.cli.run(*self.args)

    def events(self, timeout=150):
        """``[(tag, minion id, report)]`` it printed (the report is the ``data`` of the minion's
        event)."""
        self.thread.join(timeout)
        assert self.result is not None, "salt-run state.event did not end"
        if os.environ.get("KVT_SHOW"):
            print(self.result.stdout)
        out = []
        for line in (self.result.stdout or "").splitlines():
            match = EVENT.match(line)
            if match:
                payload = json.loads(match.group(2))  # on the master: {id, data, tag, ...}
                out.append((match.group(1), payload.get("id"), payload.get("data", payload)))
        return out


def test_progress_events_reach_the_master(salt_master, salt_minion, salt_cli, dir_pool, slow_url):
    pname, path = dir_pool
    name = sandbox.uid("pe-") + ".raw"

    listener = Listener(salt_master, "salt/kvm/progress/import", 5)
    ret = salt_cli.run(
        "kvm.volume_import", pname, name, slow_url, "format=raw", minion_tgt=salt_minion.id
    )
    assert ret.returncode == 0, ret
    assert os.path.getsize(os.path.join(path, name)) == SIZE
    events = listener.events()
    assert len(events) == 5, listener.result
    assert {(tag, minion) for tag, minion, _ in events} == {
        ("salt/kvm/progress/import", salt_minion.id)
    }
    reports = [data for _, _, data in events]
    assert (
        reports[0]["stage"] == "start"
        and reports[0]["percent"] == 0
        and reports[0]["total"] == SIZE
    )
    ticks = [r for r in reports if r["stage"] == "progress"]
    assert len(ticks) >= 3, reports
    for report in ticks:
        assert report["volume"] == f"{pname}/{name}" and report["operation"] == "import"
        assert 0 <= report["percent"] <= 100 and report["rate"] > 0 and report["bytes"] <= SIZE
    assert [r["percent"] for r in ticks] == sorted(r["percent"] for r in ticks)
    assert all("127.0.0.1" not in json.dumps(r) for r in reports)  # never the source

    clone = name.replace(".raw", ".qcow2")
    listener = Listener(salt_master, "salt/kvm/progress/clone", 2)
    ret = salt_cli.run(
        "kvm.volume_clone", pname, name, clone, "format=qcow2", minion_tgt=salt_minion.id
    )
    assert ret.returncode == 0 and ret.data["format"] == "qcow2", ret
    events = listener.events()
    assert [tag for tag, _, _ in events] == ["salt/kvm/progress/clone"] * 2, listener.result
    first, second = (data for _, _, data in events)
    assert (
        first["stage"] == "start"
        and first["volume"] == f"{pname}/{clone}"
        and first["source"] == f"{pname}/{name}"
    )
    assert second["stage"] in ("progress", "done") and isinstance(second["percent"], int)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(path, clone))
