"""Progress of long work: volume import, clone and wipe, external snapshot merge.

A :class:`Reporter` is made for one operation on one object. It is told how far
the work is (``update(done, total)``) as often as the caller likes and reports
at most once per ``interval`` seconds, plus always at the start and at the end:
a line at INFO in the minion log (through the logger of the module doing the
work) and a dict handed to an optional ``sink``. The loader modules make the
sink send the dict as the Salt event ``salt/kvm/progress/<operation>`` (see
:func:`salt_channel`), to the master when the minion has one, so that
``salt-run state.event tagmatch='salt/kvm/progress/*'`` shows it.

Every report is a dict::

    {"operation": "import",          # import, clone, wipe, merge
     "stage": "progress",            # start, progress, done, failed
     "percent": 42,                  # int 0..100; None when it cannot be known
     "bytes": 28311552, "total": 67108864,   # None when not known
     "rate": 5452595,                # bytes/s since the start; None when unknown
     "eta": 7.2,                     # seconds left at that rate; None when unknown
     "elapsed": 5.2,                 # seconds since the start
     ...}                            # what names the object: volume, vm, snapshot, disk

Nothing here touches Salt: the loader modules pass ``__opts__`` and
``__salt__`` to :func:`salt_channel`. A sink that raises never fails the work.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import stat
import threading
import time
from typing import Any, Callable, Iterable, Optional, Union, cast

from salt_kvm import units

log = logging.getLogger(__name__)

#: default seconds between two reports of one operation (config ``kvm:progress:interval``)
INTERVAL = 5.0
#: the tag of a progress event is this plus the operation
TAG_PREFIX = "salt/kvm/progress/"
#: seconds between two looks at work that runs in another thread (:func:`watch`)
POLL = 0.5
POLL_MIN = 0.02

START, PROGRESS, DONE, FAILED = "start", "progress", "done", "failed"

#: where reports go: called with each report (a dict)
Sink = Callable[[dict[str, Any]], Any]


class Channel:
    """Where reports go (``sink(data)``, or nowhere) and how often (``interval`` seconds;
    None: the default)."""

    def __init__(self, sink: Optional[Sink] = None, interval: Optional[float] = None) -> None:
        self.sink = sink
        self.interval = interval

    def __call__(self, data: dict[str, Any]) -> None:  # a Channel is itself a sink
        if self.sink is not None:
            self.sink(data)


def channel(progress: Union[None, Sink, Channel]) -> Channel:
    """A :class:`Channel` from what the library functions take as ``progress``:
    None, a callable sink (``events.append``) or a Channel."""
    if isinstance(progress, Channel):
        return progress
    return Channel(sink=progress)


def percent_of(done: Optional[float], total: Optional[float]) -> Optional[int]:
    """``done`` of ``total`` in whole percent (0..100); None when ``total`` is unknown."""
    if total is None or done is None:
        return None
    if total <= 0:
        return 100
    return max(0, min(100, int(done * 100 / total)))


def _size(num):
    return units.format_size(max(0, int(num)))


def _secs(seconds):
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Reporter:
    """Reports of one operation (see the module doc).

    ``what`` is the human text of the log lines (``importing default/web.qcow2``),
    ``fields`` what names the object in every report (``{"volume": ...}``).
    ``cap`` keeps an estimated percent below 100 until :meth:`finish` (a
    clone's allocation can reach the source's before the copy ends).
    """

    def __init__(
        self,
        operation: str,
        what: str,
        *,
        total: Optional[int] = None,
        progress: Union[None, Sink, Channel] = None,
        fields: Optional[dict[str, Any]] = None,
        interval: Optional[float] = None,
        logger: Optional[logging.Logger] = None,
        clock: Callable[[], float] = time.monotonic,
        cap: int = 100,
    ) -> None:
        self.operation = operation
        self.what = what
        self.total = total
        self.channel = channel(progress)
        self.fields = dict(fields or {})
        if interval is None:
            interval = self.channel.interval
        self.interval = INTERVAL if interval is None else max(0.0, float(interval))
        self.log = logger or log
        self.clock = clock
        self.cap = cap
        self.started: Optional[float] = None
        self.last: Optional[float] = None
        self.done: Optional[int] = None
        self.base = 0
        self.reports = 0
        self.finished = False

    # --- what callers use ---------------------------------------------------------

    def start(self, total: Optional[int] = None, done: Optional[int] = None) -> Reporter:
        """The work begins, or is first seen at ``done`` (always reported)."""
        if total is not None:
            self.total = total
        self.started = self.last = self.clock()
        self.done = done if done is not None else (0 if self.total is not None else None)
        self.base = self.done or 0  # the rate counts what is done from here on
        self._report(START)
        return self

    def update(self, done: Optional[int] = None, total: Optional[int] = None) -> bool:
        """The work got to ``done`` (of ``total``); reported when ``interval`` passed since the
        last report.

        Returns True when this call reported (the first call starts the work when
        :meth:`start` was not called).
        """
        if self.started is None:
            self.start(total, done)
            return True
        if total is not None:
            self.total = total
        if done is not None:
            self.done = done
        now = self.clock()
        if now - cast(float, self.last) < self.interval:  # set by start()
            return False
        self.last = now
        self._report(PROGRESS, now)
        return True

    def finish(self, done: Optional[int] = None, error: Any = None) -> None:
        """The work ended: done (``error`` None; ``done`` defaults to ``total``) or failed
        (always reported)."""
        if self.finished:
            return
        if self.started is None:
            self.start()
        self.finished = True
        if done is not None:
            self.done = done
        elif error is None and self.total is not None:
            self.done = self.total
        self._report(DONE if error is None else FAILED, error=error)

    # --- the reports ----------------------------------------------------------------

    def data(self, stage: str, now: Optional[float] = None, *, error: Any = None) -> dict[str, Any]:
        """The report of ``stage`` at ``now`` (a dict; see the module doc)."""
        now = self.clock() if now is None else now
        elapsed = max(0.0, now - cast(float, self.started))  # set by start()
        pct = percent_of(self.done, self.total)
        if pct is not None and stage != DONE and pct >= 100 and self.cap < 100:
            pct = self.cap
        if stage == START and pct is None and self.total is not None:
            pct = 0
        rate = eta = None
        if self.done is not None and elapsed > 0 and stage != START:
            rate = int(max(0, self.done - self.base) / elapsed)
            if self.total is not None and rate > 0 and stage == PROGRESS:
                eta = round(max(0, self.total - self.done) / rate, 1)
        out = dict(self.fields)
        out.update(
            {
                "operation": self.operation,
                "stage": stage,
                "percent": pct,
                "bytes": self.done,
                "total": self.total,
                "rate": rate,
                "eta": eta,
                "elapsed": round(elapsed, 1),
            }
        )
        if error is not None:
            out["error"] = str(error)
        return out

    def line(self, data: dict[str, Any]) -> str:
        """The log line of a report."""
        stage, pct, done, total = data["stage"], data["percent"], data["bytes"], data["total"]
        if stage == START:
            seen = f"{_size(done)} of " if done and total is not None else ""
            return f"{self.what}: started" + (
                f" ({seen}{_size(total)})" if total is not None else ""
            )
        parts = []
        if done is not None:
            parts.append(f"{_size(done)} of {_size(total)}" if total is not None else _size(done))
        if data["rate"] is not None:
            parts.append(f"{_size(data['rate'])}/s")
        if data["eta"] is not None:
            parts.append(f"ETA {_secs(data['eta'])}")
        parts.append(f"{_secs(data['elapsed'])} elapsed")
        how = f"{pct}%" if pct is not None else "still running (progress unknown)"
        if stage == DONE:
            how = "done" + (f", {pct}%" if pct is not None else "")
        elif stage == FAILED:
            how = f"failed ({data.get('error')})" + (f" at {pct}%" if pct is not None else "")
        return f"{self.what}: {how} ({', '.join(parts)})"

    def _report(self, stage, now=None, *, error=None):
        data = self.data(stage, now, error=error)
        self.reports += 1
        self.log.info("%s", self.line(data))
        try:
            self.channel(data)
        except Exception:  # pylint: disable=broad-except
            # progress is never worth failing the work for
            log.debug("could not hand on the progress of %s", self.what, exc_info=True)


# --- work in another thread ------------------------------------------------------------


def poll_every(reporter: Reporter) -> float:
    """Seconds between two looks at watched work: its interval, within [POLL_MIN, POLL]."""
    return max(POLL_MIN, min(POLL, reporter.interval))


def watch(
    work: Callable[[], Any], probe: Callable[[], Any], reporter: Reporter, *, lazy: bool = False
) -> Any:
    """Run ``work()`` (a blocking call, e.g. libvirt's ``createXMLFrom``) in a worker
    thread; in the calling thread ask ``probe()`` for ``done`` (or ``(done, total)``;
    None when unknown) and report it until the work ends. Return ``work()``'s result,
    or raise its exception (reported as failed).

    ``lazy``: report nothing unless the work outlasts the first look at it (for
    a call that often returns at once, or is refused and done another way).
    The reporting (and so the Salt event sink) stays in the calling thread.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        # re-raised in the caller's thread
        except BaseException as exc:  # noqa: BLE001  # pylint: disable=broad-except
            outcome["error"] = exc

    if reporter.started is None and not lazy:
        reporter.start()
    worker = threading.Thread(target=run, name=f"salt-kvm-{reporter.operation}", daemon=True)
    worker.start()
    every = poll_every(reporter)
    while True:
        worker.join(every)
        if not worker.is_alive():
            break
        try:
            got = probe()
        except Exception:  # pylint: disable=broad-except
            log.debug("progress probe of %s failed", reporter.what, exc_info=True)
            got = None
        if isinstance(got, tuple):
            reporter.update(*got)
        else:
            reporter.update(got)
    if "error" in outcome:
        if reporter.started is not None:
            reporter.finish(error=_short(outcome["error"]))
        raise outcome["error"]
    if reporter.started is not None:
        reporter.finish()
    return outcome.get("result")


def _short(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def allocated(path: str) -> Optional[int]:
    """Bytes allocated on disk to regular file ``path``; None for anything else."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_blocks * 512 if stat.S_ISREG(st.st_mode) else None


#: processes that hold a storage volume open while libvirt works on it
STORAGE_DAEMONS = ("libvirtd", "virtstoraged")


def daemon_pids(names: Iterable[str] = STORAGE_DAEMONS, proc: str = "/proc") -> list[int]:
    """Pids of the local libvirt storage daemons (empty when none can be seen)."""
    pids = []
    for entry in glob.glob(os.path.join(proc, "[0-9]*", "comm")):
        with contextlib.suppress(OSError), open(entry, encoding="utf-8") as fh:
            if fh.read().strip() in names:
                pids.append(int(entry.split(os.sep)[-2]))
    return sorted(pids)


def file_position(pids: Iterable[int], path: str, *, proc: str = "/proc") -> Optional[int]:
    """The offset of the first open file description of ``path`` among ``pids`` (from
    ``/proc/PID/fdinfo``); None when none of them has it open (or /proc is not readable)."""
    real = os.path.realpath(path)
    for pid in pids:
        fddir = os.path.join(proc, str(pid), "fd")
        try:
            fds = os.listdir(fddir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(fddir, fd)) != real:
                    continue
                with open(os.path.join(proc, str(pid), "fdinfo", fd), encoding="utf-8") as fh:
                    for row in fh:
                        if row.startswith("pos:"):
                            return int(row.split()[1])
            except (OSError, ValueError):
                continue
    return None


# --- Salt events (used by the loader modules) ---------------------------------------------


def tag(operation: str) -> str:
    """``salt/kvm/progress/<operation>``."""
    return f"{TAG_PREFIX}{operation}"


def _has_master(opts):
    master = opts.get("master")
    return (
        bool(master)
        and opts.get("file_client") != "local"
        and not opts.get("local")
        and opts.get("master_type") != "disable"
    )


def _local_bus(opts):
    """Whether a minion event bus may answer on this host (a running salt-minion's
    pull socket in ``sock_dir``). Without one, firing an event only waits for a
    connect timeout (a second) and goes nowhere."""
    if opts.get("ipc_mode", "ipc") != "ipc":
        return True
    sock_dir = opts.get("sock_dir")
    return bool(sock_dir) and bool(
        glob.glob(os.path.join(glob.escape(str(sock_dir)), "minion_event_*_pull.ipc"))
    )


class SaltEvents:
    """A sink that sends reports as Salt events ``salt/kvm/progress/<operation>``.

    On a minion with a master: ``event.send`` (it goes up to the master, where
    ``salt-run state.event`` shows it). Masterless: ``event.fire`` on the local
    minion bus, and only when a minion bus exists. A send that fails is logged
    at debug and sending stops for this sink; the work goes on.
    """

    def __init__(self, opts: dict[str, Any], salt: Any) -> None:
        self.opts = opts
        self.salt = salt
        self.master = _has_master(opts)
        self.enabled = self.master or _local_bus(opts)
        if not self.enabled:
            log.debug(
                "no minion event bus in %s: progress goes to the log only", opts.get("sock_dir")
            )

    def __call__(self, data: dict[str, Any]) -> None:
        if not self.enabled:
            return
        event_tag = tag(data.get("operation", "work"))
        try:
            if self.master:
                sent = self.salt["event.send"](event_tag, data)
            else:
                sent = self.salt["event.fire"](data, event_tag)
        except Exception:  # pylint: disable=broad-except
            log.debug("could not send the progress event %s", event_tag, exc_info=True)
            sent = False
        if sent is False:
            log.debug(
                "the progress event %s was not sent; no more progress events for this operation",
                event_tag,
            )
            self.enabled = False


def interval_from(config_get: Callable[..., Any]) -> Optional[float]:
    """``kvm:progress:interval`` (seconds or a duration like ``10s``) from ``config_get``;
    None when unset or bad."""
    value = config_get("kvm:progress:interval", None)
    if value in (None, ""):
        return None
    try:
        return units.parse_duration(value)
    except ValueError as exc:
        log.warning("kvm:progress:interval: %s; using %ss", exc, INTERVAL)
        return None


class _SaltChannel(Channel):
    """A :class:`Channel` that looks at Salt (event bus, config) only when work
    first reports: a state run of hundreds of converged volumes never pays for it."""

    def __init__(self, opts, salt):  # pylint: disable=super-init-not-called
        self._args = (opts, salt)
        self._resolved = None

    def _resolve(self):
        if self._resolved is None:
            opts, salt = self._args
            self._resolved = (SaltEvents(opts, salt), interval_from(salt["config.get"]))
        return self._resolved

    @property
    def sink(self) -> Sink:  # type: ignore[override]
        return self._resolve()[0]

    @property
    def interval(self) -> Optional[float]:  # type: ignore[override]
        return self._resolve()[1]


def salt_channel(opts: dict[str, Any], salt: Any) -> Channel:
    """The :class:`Channel` of a loader module: Salt events, interval from
    ``config.get`` (pillar or minion config); both looked up on the first report."""
    return _SaltChannel(opts, salt)
