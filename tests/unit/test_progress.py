"""The progress reporter (salt_kvm.progress): throttling, percent, rate, ETA,
log lines and the Salt event sink, with a fake clock."""

import logging
import os
import threading

import pytest

from salt_kvm import progress

M = 1024**2


class Clock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now

    def tick(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


def reporter(clock, events, total=64 * M, interval=5.0, **kwargs):
    return progress.Reporter(
        "import",
        "importing p/v.raw",
        total=total,
        progress=events.append,
        fields={"volume": "p/v.raw"},
        interval=interval,
        clock=clock,
        **kwargs,
    )


def test_start_progress_done_with_percent_rate_and_eta(clock, caplog):
    events = []
    rep = reporter(clock, events)
    with caplog.at_level(logging.INFO, logger="salt_kvm.progress"):
        rep.start()
        clock.tick(2)
        assert rep.update(16 * M) is False  # within the interval: not reported
        clock.tick(3)
        assert rep.update(32 * M) is True
        clock.tick(5)
        rep.finish()
    assert [e["stage"] for e in events] == ["start", "progress", "done"]
    start, mid, done = events
    assert start == {
        "volume": "p/v.raw",
        "operation": "import",
        "stage": "start",
        "percent": 0,
        "bytes": 0,
        "total": 64 * M,
        "rate": None,
        "eta": None,
        "elapsed": 0.0,
    }
    assert mid["percent"] == 50 and mid["bytes"] == 32 * M and mid["elapsed"] == 5.0
    assert mid["rate"] == int(32 * M / 5) and mid["eta"] == 5.0
    assert (
        done["percent"] == 100
        and done["bytes"] == 64 * M
        and done["rate"] == int(64 * M / 10)
        and done["eta"] is None
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "salt_kvm.progress"]
    assert lines == [
        "importing p/v.raw: started (64M)",
        "importing p/v.raw: 50% (32M of 64M, 6.4M/s, ETA 5.0s, 5.0s elapsed)",
        "importing p/v.raw: done, 100% (64M of 64M, 6.4M/s, 10.0s elapsed)",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "salt_kvm.progress")


def test_throttle_reports_at_most_once_per_interval(clock):
    events = []
    rep = reporter(clock, events, interval=1.0)
    rep.start()
    for _ in range(100):  # 10 s of updates every 0.1 s
        clock.tick(0.1)
        rep.update((rep.done or 0) + M // 2)
    rep.finish()
    ticks = [e for e in events if e["stage"] == "progress"]
    assert 9 <= len(ticks) <= 10
    assert [e["bytes"] for e in events] == sorted(e["bytes"] for e in events)
    elapsed = [e["elapsed"] for e in ticks]
    assert all(b - a >= 0.99 for a, b in zip(elapsed, elapsed[1:]))


def test_interval_zero_reports_every_update(clock):
    events = []
    rep = reporter(clock, events, total=4, interval=0)
    rep.start()
    for done in range(1, 5):
        clock.tick(1)
        rep.update(done)
    rep.finish()
    assert [e["percent"] for e in events] == [0, 25, 50, 75, 100, 100]


def test_interval_comes_from_the_channel_when_not_given(clock):
    rep = progress.Reporter(
        "wipe", "wiping", total=10, progress=progress.Channel(sink=None, interval=0.25), clock=clock
    )
    assert rep.interval == 0.25
    assert (
        progress.Reporter("wipe", "wiping", total=10, progress=None, clock=clock).interval
        == progress.INTERVAL
    )
    assert (
        progress.Reporter(
            "wipe",
            "wiping",
            total=10,
            progress=progress.Channel(interval=3),
            interval=1,
            clock=clock,
        ).interval
        == 1
    )


def test_unknown_total_reports_elapsed_only(clock, caplog):
    events = []
    rep = progress.Reporter(
        "wipe", "wiping p/v", total=None, progress=events.append, interval=1, clock=clock
    )
    with caplog.at_level(logging.INFO, logger="salt_kvm.progress"):
        rep.start()
        clock.tick(2)
        rep.update(None)
        rep.finish()
    assert [(e["stage"], e["percent"], e["rate"], e["eta"]) for e in events] == [
        ("start", None, None, None),
        ("progress", None, None, None),
        ("done", None, None, None),
    ]
    assert "wiping p/v: still running (progress unknown) (2.0s elapsed)" in caplog.text
    assert "wiping p/v: started" in caplog.text and "wiping p/v: done (2.0s elapsed)" in caplog.text


def test_cap_keeps_an_estimate_below_100_until_done(clock):
    events = []
    rep = progress.Reporter(
        "clone", "cloning", total=10 * M, progress=events.append, interval=0, clock=clock, cap=99
    )
    rep.start()
    clock.tick(1)
    rep.update(12 * M)  # the new file took more than the source's allocation
    rep.finish()
    assert [e["percent"] for e in events] == [0, 99, 100]
    assert events[1]["eta"] == 0.0


def test_failure_is_reported_with_the_error(clock, caplog):
    events = []
    rep = reporter(clock, events, interval=0)
    with caplog.at_level(logging.INFO, logger="salt_kvm.progress"):
        rep.start()
        clock.tick(2)
        rep.update(16 * M)
        rep.finish(error="stream refused")
        rep.finish()  # only once
    assert [e["stage"] for e in events] == ["start", "progress", "failed"]
    assert (
        events[-1]["error"] == "stream refused"
        and events[-1]["percent"] == 25
        and events[-1]["bytes"] == 16 * M
    )
    assert (
        "importing p/v.raw: failed (stream refused) at 25% (16M of 64M, 8M/s, 2.0s elapsed)"
        in caplog.text
    )


def test_a_failing_sink_never_fails_the_work(clock):
    def sink(_data):
        raise RuntimeError("no bus")

    rep = progress.Reporter("import", "importing", total=10, progress=sink, interval=0, clock=clock)
    rep.start()
    rep.update(5)
    rep.finish()
    assert rep.reports == 3


def test_update_before_start_starts(clock):
    events = []
    rep = reporter(clock, events, interval=0)
    rep.update(M)
    assert [(e["stage"], e["bytes"], e["percent"]) for e in events] == [("start", M, 1)]
    clock.tick(2)
    rep.update(5 * M)
    assert events[-1]["rate"] == 2 * M  # counted from where the work was first seen
    assert rep.line(events[0]) == "importing p/v.raw: started (1M of 64M)"


def test_percent_of():
    assert progress.percent_of(None, 10) is None and progress.percent_of(5, None) is None
    assert progress.percent_of(0, 0) == 100 and progress.percent_of(5, 10) == 50
    assert progress.percent_of(11, 10) == 100 and progress.percent_of(-1, 10) == 0


def test_long_durations_in_lines(clock):
    rep = progress.Reporter("merge", "merging", total=100, progress=None, interval=0, clock=clock)
    rep.start()
    clock.tick(3725)
    data = rep.data("progress")
    data["bytes"] = 1
    assert rep.line(dict(data, rate=None, eta=None)).endswith("(1 of 100, 1h02m05s elapsed)")


# --- watch: blocking work in a worker thread -------------------------------------------------


def test_watch_polls_in_the_calling_thread_and_returns_the_result(clock):
    events, threads = [], []
    gate = threading.Event()
    done = {"n": 0}

    def work():
        gate.wait(5)
        return "vol"

    def probe():
        threads.append(threading.current_thread())
        done["n"] += 1
        if done["n"] >= 3:
            gate.set()
        return done["n"], 10

    rep = progress.Reporter("clone", "cloning", total=None, progress=events.append, interval=0)
    assert progress.watch(work, probe, rep) == "vol"
    assert set(threads) == {threading.current_thread()}
    assert (
        events[0]["stage"] == "start"
        and events[-1]["stage"] == "done"
        and events[-1]["percent"] == 100
    )
    assert [e["bytes"] for e in events if e["stage"] == "progress"][:3] == [1, 2, 3]


def test_watch_reraises_the_work_error_and_reports_failed():
    events = []

    def work():
        raise ValueError("libvirt said no\nmore")

    rep = progress.Reporter("wipe", "wiping", total=10, progress=events.append, interval=0)
    with pytest.raises(ValueError, match="libvirt said no"):
        progress.watch(work, lambda: None, rep)
    assert events[-1]["stage"] == "failed" and events[-1]["error"] == "libvirt said no"


def test_watch_survives_a_failing_probe():
    gate = threading.Event()

    def probe():
        gate.set()
        raise OSError("gone")

    rep = progress.Reporter("wipe", "wiping", total=10, progress=None, interval=0)
    assert progress.watch(lambda: gate.wait(5), probe, rep) is True


# --- probes ----------------------------------------------------------------------------------


def test_allocated(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 65536)
    assert progress.allocated(str(path)) >= 65536
    assert (
        progress.allocated(str(tmp_path)) is None
        and progress.allocated(str(tmp_path / "missing")) is None
    )


def test_file_position_reads_fdinfo_of_our_own_process(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"\0" * 8192)
    with open(path, "rb") as fh:
        fh.seek(4096)
        assert progress.file_position([os.getpid()], str(path)) == 4096
    assert progress.file_position([os.getpid()], str(path)) is None
    assert progress.file_position([], str(path)) is None


def test_daemon_pids_by_comm(tmp_path):
    for pid, comm in ((10, "libvirtd"), (11, "bash"), (12, "virtstoraged")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(comm + "\n")
    assert progress.daemon_pids(proc=str(tmp_path)) == [10, 12]


# --- Salt events -----------------------------------------------------------------------------


class FakeSalt(dict):
    def __init__(self, result=True, error=None):
        super().__init__()
        self.calls = []

        def send(tag, data):
            self.calls.append(("event.send", tag, data))
            if error:
                raise error
            return result

        def fire(data, tag):
            self.calls.append(("event.fire", tag, data))
            if error:
                raise error
            return result

        self["event.send"], self["event.fire"] = send, fire


def test_events_go_to_the_master_when_there_is_one():
    salt = FakeSalt()
    sink = progress.SaltEvents({"master": "salt", "file_client": "remote"}, salt)
    sink({"operation": "clone", "percent": 5})
    assert salt.calls == [
        ("event.send", "salt/kvm/progress/clone", {"operation": "clone", "percent": 5})
    ]


def test_masterless_events_go_to_the_local_bus_only_when_it_exists(tmp_path):
    salt = FakeSalt()
    opts = {"master": "salt", "file_client": "local", "sock_dir": str(tmp_path)}
    sink = progress.SaltEvents(opts, salt)
    sink({"operation": "wipe"})
    assert (
        salt.calls == [] and sink.enabled is False
    )  # no minion bus: no 1 s connect timeout per report
    (tmp_path / "minion_event_0123456789_pull.ipc").write_text("")
    sink = progress.SaltEvents(opts, salt)
    sink({"operation": "wipe"})
    assert salt.calls == [("event.fire", "salt/kvm/progress/wipe", {"operation": "wipe"})]
    tcp = progress.SaltEvents(
        {"file_client": "local", "ipc_mode": "tcp", "sock_dir": str(tmp_path / "none")}, salt
    )
    assert tcp.enabled is True


@pytest.mark.parametrize(
    "salt", [FakeSalt(result=False), FakeSalt(error=RuntimeError("down"))], ids=["false", "raises"]
)
def test_a_failed_send_stops_sending_and_never_raises(salt):
    sink = progress.SaltEvents({"master": "salt"}, salt)
    sink({"operation": "merge"})
    sink({"operation": "merge"})
    assert len(salt.calls) == 1 and sink.enabled is False


def test_salt_channel_reads_the_interval():
    config = {"kvm:progress:interval": "2s"}
    salt = FakeSalt()
    salt["config.get"] = lambda key, default=None: config.get(key, default)
    chan = progress.salt_channel({"master": "m"}, salt)
    assert chan.interval == 2.0 and isinstance(chan.sink, progress.SaltEvents)
    assert progress.interval_from(lambda key, default=None: 0.5) == 0.5
    assert progress.interval_from(lambda key, default=None: None) is None
    assert progress.interval_from(lambda key, default=None: "soon") is None
    assert progress.tag("import") == "salt/kvm/progress/import"


def test_lazy_watch_is_silent_for_work_that_ends_at_once():
    events = []
    rep = progress.Reporter("merge", "merging", total=None, progress=events.append, interval=0)
    assert progress.watch(lambda: "quick", lambda: (1, 2), rep, lazy=True) == "quick"

    def refused():
        raise ValueError("unsupported")

    with pytest.raises(ValueError):
        progress.watch(
            refused,
            lambda: None,
            progress.Reporter("merge", "merging", total=None, progress=events.append, interval=0),
            lazy=True,
        )
    assert events == []


def test_lazy_watch_reports_work_that_outlasts_a_look():
    events = []
    gate = threading.Event()
    looks = []

    def probe():
        looks.append(1)
        if len(looks) >= 2:
            gate.set()
        return 50, 100

    rep = progress.Reporter("merge", "merging", total=None, progress=events.append, interval=0)
    progress.watch(lambda: gate.wait(5), probe, rep, lazy=True)
    assert (
        events[0]["stage"] == "start"
        and events[1]["percent"] == 50
        and events[-1]["stage"] == "done"
        and events[-1]["percent"] == 100
    )


# --- qemu-img -p output (salt_kvm.snapshot) ----------------------------------------------------


def test_run_progress_parses_what_qemu_img_prints():
    import sys  # pylint: disable=import-outside-toplevel

    from salt_kvm import snapshot  # pylint: disable=import-outside-toplevel

    script = (
        "import sys\nfor p in ('0.00', '12.50', '100.00'):\n    sys.stdout.write(f'    "
        "({p}/100%)\\r'); sys.stdout.flush()\nprint('Image committed.')"
    )
    seen = []
    snapshot._run_progress(seen.append, sys.executable, "-c", script)  # pylint: disable=protected-access
    assert seen == [0.0, 12.5, 100.0]

    failing = (
        "import sys\nsys.stdout.write('    (3.00/100%)\\r'); sys.stderr.write('qemu-img: Could "
        "not open x\\n'); sys.exit(1)"
    )
    seen = []
    with pytest.raises(snapshot.KvmError, match="failed: qemu-img: Could not open x"):
        snapshot._run_progress(seen.append, sys.executable, "-c", failing)  # pylint: disable=protected-access
    assert seen == [3.0]


def test_percent_to_turns_percent_into_bytes_of_the_total(clock):
    from salt_kvm import snapshot  # pylint: disable=import-outside-toplevel

    events = []
    rep = progress.Reporter(
        "merge", "merging", total=200 * M, progress=events.append, interval=0, clock=clock
    ).start()
    clock.tick(1)
    snapshot._percent_to(rep)(25.0)  # pylint: disable=protected-access
    assert (
        events[-1]["bytes"] == 50 * M
        and events[-1]["percent"] == 25
        and events[-1]["rate"] == 50 * M
    )
