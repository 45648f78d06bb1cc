"""Every example in the docs is run.

* Every file under ``docs/examples/`` is picked up by itself. A pillar example
  (a YAML mapping with a ``kvm`` key, and ``pillar.example``) is validated with
  :mod:`salt_kvm.schema`, rendered with :mod:`salt_kvm.formula`, and then
  applied for real with ``salt-call --local state.apply kvm`` in a sandbox:
  every object renamed ``kvt-<uid>``, bridges in a ``kvt-`` network namespace
  whose NIC is a veth to a "LAN" namespace holding the gateway, addresses of
  libvirt networks moved into a free part of 198.51.100.0/24, pools on files,
  loop devices and a one-monitor Ceph, VMs that are tiny real VMs, persisted
  network files in private copies of ``/etc/network`` (and the other
  configuration directories), seen only by that ``salt-call``. It is applied
  twice (the second apply must change nothing), then removed. What this host
  cannot run (NFS, logical volumes, ...) is defined and undefined in libvirt
  instead, and the test for that part skips naming the kernel's limit.
* Any other SLS example (orchestration, states) is rendered by the real
  ``salt-call state.show_sls``; the ``kvm`` states, execution functions and
  runner functions it names must exist and accept its arguments.
* Every ``.. code-block:: yaml`` holding a ``kvm`` pillar in ``docs/**/*.rst``
  must be valid, and every ``salt``/``salt-call``/``salt-run`` command in the
  docs that calls a ``kvm.*`` function must name a real function with
  arguments it accepts.
"""

import ast
import base64
import contextlib
import copy
import functools
import hashlib
import http.server
import ipaddress
import json
import os
import pathlib
import random
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import uuid

import pytest
import yaml

from salt_kvm import formula, schema, units
from tests.support import kernel, sandbox
from tests.support.saltcall import SaltCall, changed, repo_file_root, state_results

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
EXAMPLES = DOCS / "examples"
PILLAR_EXAMPLE = REPO / "pillar.example"
YAML_SUFFIXES = (".sls", ".yaml", ".yml")
#: configuration directories the persistence renderers write to: private copies during an apply
ETC_DIRS = ("/etc/network", "/etc/systemd/network", "/etc/NetworkManager")
M = 1024**2


# --- the examples ---------------------------------------------------------------------


def _example_files():
    return sorted(p for p in EXAMPLES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _rel(path):
    return str(path.relative_to(REPO))


def _load_yaml(path):
    """The example's data, or None when it needs rendering (Jinja) first."""
    text = path.read_text(encoding="utf-8")
    if "{%" in text or "{{" in text:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _is_pillar(path):
    data = _load_yaml(path) if path.suffix in YAML_SUFFIXES else None
    return isinstance(data, dict) and "kvm" in data


PILLAR_FILES = [p for p in _example_files() if _is_pillar(p)] + [PILLAR_EXAMPLE]
SLS_FILES = [p for p in _example_files() if p.suffix == ".sls" and not _is_pillar(p)]
OTHER_FILES = [p for p in _example_files() if p not in PILLAR_FILES and p not in SLS_FILES]


def _pillar(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if path != PILLAR_EXAMPLE or "kvm" in data else {"kvm": data}


def _sls_name(path):
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


# --- the functions that exist (read from the loader modules' source) ---------------------


@functools.cache
def _signatures(relpath):
    """``{function: (params, required, has_kwargs, has_varargs)}`` of a loader module."""
    tree = ast.parse((REPO / relpath).read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            args = node.args
            positional = [a.arg for a in args.posonlyargs + args.args]
            required = positional[: len(positional) - len(args.defaults)]
            params = positional + [a.arg for a in args.kwonlyargs]
            out[node.name] = (params, required, args.kwarg is not None, args.vararg is not None)
    return out


MODULES = {"execution": "_modules/kvm.py", "state": "_states/kvm.py", "runner": "_runners/kvm.py"}


def _check_call(kind, func, positional=0, keywords=(), where=""):
    """Problems with calling ``kvm.<func>`` of ``kind`` with these arguments (empty: fine)."""
    sigs = _signatures(MODULES[kind])
    if func not in sigs:
        return [f"{where}: kvm.{func} is not a {kind} function (known: {', '.join(sorted(sigs))})"]
    params, required, has_kwargs, has_varargs = sigs[func]
    problems = []
    if positional > len(params) and not has_varargs:
        problems.append(
            f"{where}: kvm.{func} takes at most {len(params)} positional arguments, got {positional}"
        )
    for key in keywords:
        if key not in params and not has_kwargs:
            problems.append(
                f"{where}: kvm.{func} has no argument {key!r} (it takes {', '.join(params)})"
            )
    named = set(params[:positional]) | set(keywords)
    missing = [p for p in required if p not in named]
    if missing and (
        positional or keywords
    ):  # a bare name is a mention in prose (``salt-call kvm.x``)
        problems.append(f"{where}: kvm.{func} needs {', '.join(missing)}")
    return problems


def _check_states(states, where):
    """The kvm.* states, salt.runner kvm.* and module.run-free salt.function calls of rendered high data."""
    problems = []
    for sid, body in states.items():
        if sid.startswith("__") or not isinstance(body, dict):
            continue
        for mod, args in body.items():
            if mod.startswith("__") or not isinstance(args, list):
                continue
            fun = next((a for a in args if isinstance(a, str)), None)
            if "." in mod:
                mod, fun = mod.split(".", 1)
            kwargs = {}
            for arg in args:
                if isinstance(arg, dict):
                    kwargs.update(arg)
            requisites = {
                "require",
                "watch",
                "onfail",
                "onchanges",
                "prereq",
                "use",
                "order",
                "require_in",
                "watch_in",
                "onfail_in",
                "onchanges_in",
                "listen",
                "unless",
                "onlyif",
                "failhard",
                "check_cmd",
                "retry",
                "parallel",
            }
            kwargs = {k: v for k, v in kwargs.items() if k not in requisites}
            if mod == "kvm":
                problems += _check_call(
                    "state", fun, 0, set(kwargs) | {"name"}, f"{where}: {sid}"
                )  # name defaults to the ID
            elif (
                mod == "salt"
                and fun in ("runner", "function")
                and str(kwargs.get("name", "")).startswith("kvm.")
            ):
                kind = "runner" if fun == "runner" else "execution"
                target = {
                    "tgt",
                    "tgt_type",
                    "arg",
                    "kwarg",
                    "ret",
                    "timeout",
                    "batch",
                    "ssh",
                    "expect_minions",
                    "fail_minions",
                    "subset",
                }
                keys = (
                    set(kwargs) - {"name"} if kind == "runner" else set(kwargs.get("kwarg") or {})
                )
                if kind == "execution":
                    keys -= target
                problems += _check_call(
                    kind, kwargs["name"][4:], len(kwargs.get("arg") or []), keys, f"{where}: {sid}"
                )
    return problems


# --- unit level: schema and formula --------------------------------------------------------


@pytest.mark.parametrize("path", PILLAR_FILES, ids=_rel)
def test_pillar_example_is_valid_and_renders(path):
    data = _pillar(path)
    tree = schema.validate_pillar(data["kvm"])  # raises, naming the path, when invalid
    assert tree
    rendered = {}
    for part in formula.PARTS:
        states = formula.render(part, data["kvm"])
        assert not set(states) & set(rendered), f"state ids of {part} collide"
        rendered.update(states)
    assert rendered, f"{_rel(path)} renders no state"
    assert not _check_states(rendered, _rel(path))
    for job, spec in (data.get("schedule") or {}).items():
        _check_schedule_job(job, spec)


def _check_schedule_job(job, spec):
    """A Salt scheduler job as the docs show it: a function that exists, SLS names that exist."""
    assert isinstance(spec, dict) and spec.get("function"), f"schedule:{job}: needs function"
    intervals = {"seconds", "minutes", "hours", "days", "when", "cron", "once"}
    assert intervals & set(spec), f"schedule:{job}: needs one of {sorted(intervals)}"
    known = intervals | {
        "function",
        "args",
        "kwargs",
        "splay",
        "maxrunning",
        "return_job",
        "jid_include",
        "enabled",
        "range",
        "after",
        "until",
        "run_on_start",
        "returner",
        "name",
        "skip_during_range",
        "run_after_skip_range",
    }
    assert set(spec) <= known, f"schedule:{job}: unknown keys {sorted(set(spec) - known)}"
    fun = spec["function"]
    if fun.startswith("kvm."):
        assert not _check_call(
            "execution",
            fun[4:],
            len(spec.get("args") or []),
            set(spec.get("kwargs") or {}),
            f"schedule:{job}",
        )
    if fun in ("state.apply", "state.sls"):
        for sls in spec.get("args") or []:
            parts = str(sls).split(".")
            candidates = [
                REPO.joinpath(*parts).with_suffix(".sls"),
                REPO.joinpath(*parts, "init.sls"),
            ]
            assert any(c.exists() for c in candidates), f"schedule:{job}: no SLS {sls}"


def test_pillar_example_renders_to_the_expected_states():
    """pillar.example through the formula: one state per object, volumes after their pool and backing."""
    kvm = _pillar(PILLAR_EXAMPLE)["kvm"]
    states = {}
    for part in formula.PARTS:
        states.update(formula.render(part, kvm))
    funcs = {sid: next(iter(body)) for sid, body in states.items()}
    assert funcs == {
        "kvm-bridge-br0": "kvm.bridge_present",
        "kvm-bridge-br-vm": "kvm.bridge_present",
        "kvm-bridge-br-old": "kvm.bridge_absent",
        "kvm-network-default": "kvm.network_present",
        "kvm-network-lan": "kvm.network_present",
        "kvm-pool-default": "kvm.pool_present",
        "kvm-volume-default-ubuntu.qcow2": "kvm.volume_present",
        "kvm-volume-default-base.img": "kvm.volume_present",
        "kvm-volume-default-web01.qcow2": "kvm.volume_present",
        "kvm-pool-vms": "kvm.pool_present",
        "kvm-vm-web01": "kvm.vm_present",
        "kvm-snapshots-web01": "kvm.snapshots_retained",
    }

    def args(sid):
        return {k: v for item in states[sid][funcs[sid]] for k, v in item.items()}

    assert (
        args("kvm-bridge-br0")["ports"] == [{"name": "eno1"}]
        and args("kvm-bridge-br0")["persist"] == "auto"
    )
    assert args("kvm-volume-default-web01.qcow2")["require"] == [
        {"kvm": "kvm-pool-default"},
        {"kvm": "kvm-volume-default-base.img"},
    ]
    assert args("kvm-volume-default-ubuntu.qcow2")["size"] == 20 * 1024**3
    assert args("kvm-snapshots-web01")["require"] == [{"kvm": "kvm-vm-web01"}]
    assert {k: v for k, v in args("kvm-snapshots-web01").items() if k != "require"} == {
        "name": "web01",
        "every": 86400,
        "keep": 7,
        "prefix": "auto-",
        "memory": True,
    }
    vm = args("kvm-vm-web01")
    assert (
        vm["memory"] == 2 * 1024**3
        and vm["run_state"] == "running"
        and {"kvm": "kvm-volume-default-web01.qcow2"} in vm["require"]
    )
    order = list(formula.render("storage", kvm))
    assert order.index("kvm-volume-default-base.img") < order.index(
        "kvm-volume-default-web01.qcow2"
    )


# --- SLS examples (orchestration, states): real salt-call renders them -----------------------


@pytest.fixture(scope="module")
def render_call(tmp_path_factory):
    root = tmp_path_factory.mktemp("kvt-docs-render")
    return SaltCall(root, file_roots=[repo_file_root(root / "file-root")])


@pytest.mark.parametrize("path", SLS_FILES, ids=_rel)
def test_sls_example_renders_with_salt(path, render_call):
    code, data, err = render_call.run("state.show_sls", _sls_name(path))
    assert code == 0 and isinstance(data, dict), f"{_sls_name(path)} does not render: {data}\n{err}"
    assert data, f"{_sls_name(path)} renders no state"
    problems = _check_states(data, _rel(path))
    assert not problems, "\n".join(problems)
    # an orchestration names runner functions that exist (checked above); show what it runs
    for sid, body in data.items():
        for mod in body:
            if not mod.startswith("__"):
                assert mod in ("salt", "kvm", "test", "cmd", "file", "module"), (
                    f"{sid}: unexpected state module {mod}"
                )


# --- docs/**/*.rst: inline pillars and commands --------------------------------------------------


def _rst_files():
    return sorted(DOCS.rglob("*.rst"))


def _code_blocks(text, languages):
    """``(line number, code)`` of each ``.. code-block:: LANG`` (and ``::``-free) block."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)\.\. code-block::\s*(\S+)", lines[i])
        if match and match.group(2) in languages:
            indent = len(match.group(1))
            start = i + 1
            body = []
            j = start
            while j < len(lines) and (
                not lines[j].strip()
                or lines[j].startswith(":", indent + 3)
                or len(lines[j]) - len(lines[j].lstrip()) > indent
            ):
                body.append(lines[j])
                j += 1
            code = [b for b in body if not re.match(r"^\s+:\w+:", b)]
            out.append((start + 1, _dedent(code)))
            i = j
        else:
            i += 1
    return out


def _dedent(lines):
    width = min((len(b) - len(b.lstrip()) for b in lines if b.strip()), default=0)
    return "\n".join(b[width:] for b in lines).strip("\n") + "\n"


def test_inline_yaml_pillars_in_the_docs_are_valid():
    problems, checked = [], 0
    for rst in _rst_files():
        for line, code in _code_blocks(rst.read_text(encoding="utf-8"), ("yaml", "yaml+jinja")):
            where = f"{rst.relative_to(REPO)}:{line}"
            try:
                data = yaml.safe_load(code)
            except yaml.YAMLError as exc:
                if re.search(r"^kvm:", code, re.MULTILINE) and "{%" not in code:
                    problems.append(f"{where}: the kvm pillar is not valid YAML: {exc}")
                continue
            if not isinstance(data, dict) or "kvm" not in data:
                continue
            checked += 1
            try:
                schema.validate_pillar(data["kvm"])
            except schema.InvalidInput as exc:
                problems.append(f"{where}: {exc}")
    assert not problems, "\n".join(problems)
    assert checked >= 5, f"only {checked} inline kvm pillars found in the docs"


#: salt options that take a value (the rest are flags)
_VALUE_OPTS = {
    "-b",
    "--batch",
    "--batch-size",
    "--batch-wait",
    "-t",
    "--timeout",
    "--out",
    "-c",
    "--config-dir",
    "--return",
    "-l",
    "--log-level",
    "--out-file",
    "--out-indent",
    "-d",
}


def _commands(text):
    """Every ``salt``/``salt-call``/``salt-run`` command line in ``text`` (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", text)  # shell continuations
    text = re.sub(
        r"``(.+?)``", lambda m: "``" + m.group(1).replace("\n", " ") + "``", text, flags=re.DOTALL
    )  # inline literals over two lines
    for line in text.splitlines():
        for match in re.finditer(r"(?:^|[\s`$(])(salt|salt-call|salt-run)\s+([^`\n]*)", line):
            yield match.group(1), match.group(2)


def _parse_command(cmd, rest):
    """``(function, positional count, keyword names)`` of a kvm.* call, else None."""
    rest = rest.split(" #", 1)[0].split("|", 1)[0].replace("[", " ").replace("]", " ")
    try:
        tokens = shlex.split(rest)
    except ValueError:
        tokens = rest.split()
    positional, skip = [], False
    for tok in tokens:
        if skip:
            skip = False
            continue
        if tok.startswith("-"):
            skip = tok in _VALUE_OPTS
            continue
        positional.append(tok)
    if cmd == "salt":
        positional = positional[1:]  # the target
    if not positional or not re.fullmatch(r"kvm\.\w+", positional[0]):
        return None
    func, args = positional[0][4:], positional[1:]
    keywords = {a.split("=", 1)[0] for a in args if re.match(r"^\w+=", a)}
    count = len([a for a in args if not re.match(r"^\w+=", a) and a not in ("...", "\u2026")])
    return func, count, keywords


def test_commands_in_the_docs_name_real_functions():
    problems, checked = [], 0
    # docs/demo.rst is a captured transcript: its "=== salt-call ... ===" headers are not command lines
    sources = [p for p in _rst_files() if p.name != "demo.rst"] + [
        p for p in _example_files() if p.suffix in YAML_SUFFIXES
    ]
    for path in sources:
        for cmd, rest in _commands(path.read_text(encoding="utf-8")):
            parsed = _parse_command(cmd, rest)
            if parsed is None:
                continue
            func, count, keywords = parsed
            checked += 1
            kind = "runner" if cmd == "salt-run" else "execution"
            problems += _check_call(
                kind, func, count, keywords, f"{path.relative_to(REPO)}: `{cmd} {rest.strip()}`"
            )
    assert not problems, "\n".join(problems)
    assert checked >= 20, f"only {checked} kvm commands found in the docs"


def test_the_command_parser():
    assert _parse_command("salt", "-G 'kvm:hypervisor:kvm' state.apply kvm") is None
    assert _parse_command("salt", "hv01 kvm.bridge_show br0") == ("bridge_show", 1, set())
    assert _parse_command("salt-call", "--out=json kvm.pool_show x") == ("pool_show", 1, set())
    assert _parse_command("salt-run", "kvm.snapshot tgt='*' vms='web-*' name=x  # a comment") == (
        "snapshot",
        0,
        {"tgt", "vms", "name"},
    )
    assert _parse_command("salt", "'*' --batch-size 10% kvm.pool_list") == ("pool_list", 0, set())
    assert not _check_call("execution", "bridge_show", 1, set())
    assert _check_call("execution", "bridge_show", 0, {"netns"})  # name missing
    assert _check_call("execution", "bridge_show", 1, {"nope"}) and _check_call(
        "execution", "no_such", 0, set()
    )
    assert not _check_call("execution", "bridge_show", 1, {"netns"})


# --- the sandbox: a pillar example applied for real ------------------------------------------


#: where a part this kernel cannot run is run for real
KERNEL_TIER = (
    "make test-kernel runs it in Debian's kernel (tests/functional/test_real_kernel.py::{})"
)


def _limit(part, spec, env):
    """Why ``part`` of a pillar cannot be applied on this host (None: it can)."""
    kind = part.split(":")[0]
    if kind == "pools" and part.endswith(":volumes"):
        if spec.get("type") == "logical" and not kernel.has_device_mapper():
            return (
                "logical volumes need device-mapper, which this kernel lacks (no device-mapper in /proc/misc); the pool itself is applied; "
                + KERNEL_TIER.format("test_lvm_logical_volumes_for_real")
            )
        return None
    if kind == "pools":
        ptype = spec.get("type")
        if ptype == "netfs":
            fmt = (spec.get("source") or {}).get("format", "nfs")
            if fmt in ("nfs", "auto", "cifs"):
                fs = "cifs" if fmt == "cifs" else "nfs"
                if not kernel.has_filesystem(fs):
                    return (
                        f"a netfs {fmt} pool cannot be started here: the kernel has no {fs} filesystem (not in /proc/filesystems); "
                        + KERNEL_TIER.format("test_nfs_netfs_pool_for_real")
                    )
                return f"no {fs} server is started by this test"
            return f"a netfs {fmt} pool needs its server (tested for real in test_pools_real_backends.py)"
        if ptype == "logical":
            return (
                None if shutil.which("vgcreate") else "lvm2 is not installed (apt-get install lvm2)"
            )
        if ptype == "rbd":
            return env.ceph_missing
        if ptype == "iscsi":
            err = kernel.netlink_iscsi_error()
            return (
                f"an iscsi pool cannot log in here: socket(AF_NETLINK, NETLINK_ISCSI) fails ({err}); "
                + KERNEL_TIER.format("test_iscsi_pool_with_chap_for_real")
                if err
                else "no iSCSI target is started by this test"
            )
        if ptype in ("iscsi-direct", "gluster"):
            return (
                f"a {ptype} pool needs its server (tested for real in test_pools_real_backends.py)"
            )
        if ptype in ("fs", "disk"):
            return f"{ptype} pools on loop devices are tested in test_pools_types.py; this test does not partition or format devices"
        return None
    if kind == "bridges":
        ports = [p if isinstance(p, str) else p.get("name") for p in _ports(spec)]
        if spec.get("vlan_filtering") and not kernel.has_bridge_vlan_filtering():
            return (
                "bridge VLAN filtering needs CONFIG_BRIDGE_VLAN_FILTERING, which this kernel lacks; "
                + KERNEL_TIER.format("test_vlan_trunk_and_access_ports_carry_tagged_traffic")
            )
        if any("." in p for p in ports) and not kernel.has_8021q():
            return (
                "VLAN sub-interfaces need the kernel's 8021q support, which this kernel lacks; "
                + KERNEL_TIER.format("test_vlan_subinterface_port_carries_tagged_traffic")
            )
        return None
    if kind == "snapshots" and spec.get("quiesce"):
        return "quiesce needs the QEMU guest agent inside the VM; the test's tiny VMs run no OS"
    return None


def _ports(spec):
    ports = spec.get("ports") or []
    if isinstance(ports, dict):
        return [dict(v or {}, name=k) for k, v in ports.items()]
    return ports


def _parts(kvm):
    """``(part, spec)`` of every object of a pillar, and ``pools:NAME:volumes``."""
    out = []
    for kind in ("bridges", "networks", "pools", "snapshots"):
        for name, spec in (kvm.get(kind) or {}).items():
            out.append((f"{kind}:{name}", spec or {}))
            if kind == "pools" and (spec or {}).get("volumes"):
                out.append((f"pools:{name}:volumes", spec))
    return out


def _maybe_limited(part, spec):
    """Whether :func:`_limit` may find ``part`` beyond some host (its kind can be)."""
    kind = part.split(":")[0]
    if kind == "pools" and part.endswith(":volumes"):
        return spec.get("type") == "logical"
    if kind == "pools":
        return spec.get("type") != "dir"
    if kind == "bridges":
        names = [p if isinstance(p, str) else p.get("name", "") for p in _ports(spec)]
        return bool(spec.get("vlan_filtering")) or any("." in n for n in names)
    return kind == "snapshots" and bool(spec.get("quiesce"))


def _limited_parts():
    """Parts that may not be applicable here (decided at run time by :func:`_limit`)."""
    return [
        pytest.param(path, part, id=f"{_rel(path)}::{part}")
        for path in PILLAR_FILES
        for part, spec in _parts(_pillar(path)["kvm"])
        if _maybe_limited(part, spec)
    ]


class Env:
    """What this host offers, found once per module."""

    def __init__(self, conn):
        self.conn = conn
        self.ceph = None
        self.ceph_missing = "no example needs Ceph"
        self._ceph_tried = False

    def need_ceph(self):
        if self._ceph_tried:
            return
        self._ceph_tried = True
        from tests.support.ceph import Ceph  # pylint: disable=import-outside-toplevel
        from tests.support.storage_servers import Unavailable, backend_missing  # pylint: disable=import-outside-toplevel

        missing = backend_missing(self.conn, "rbd")
        if missing:
            self.ceph_missing = missing
            return
        server = Ceph()
        try:
            server.start()
        except Unavailable as exc:
            server.stop()
            self.ceph_missing = f"no Ceph could be started here: {exc}"
            return
        except BaseException:
            server.stop()
            raise
        self.ceph, self.ceph_missing = server, None

    def close(self):
        if self.ceph:
            self.ceph.stop()


@pytest.fixture(scope="module")
def env(conn):
    found = Env(conn)
    try:
        yield found
    finally:
        found.close()


class FileServer:
    """http://127.0.0.1:PORT/ serving one directory (for volume sources given as URLs)."""

    def __init__(self, directory):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
        handler.log_message = lambda *a, **k: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _free_subnet(conn, prefix=27):
    """A /27 of 198.51.100.0/24 that no route here and no libvirt network uses."""
    used = []
    out = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False
    ).stdout
    for word in re.findall(r"(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", out):
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(word, strict=False))
    from lxml import etree  # pylint: disable=import-outside-toplevel

    for net in conn.listAllNetworks(0):
        for ip in etree.fromstring(net.XMLDesc(0)).iter("ip"):
            with contextlib.suppress(ValueError, TypeError):
                mask = ip.get("prefix") or ip.get("netmask") or "24"
                used.append(ipaddress.ip_network(f"{ip.get('address')}/{mask}", strict=False))
    candidates = list(ipaddress.ip_network(sandbox.ROOT_NS_RANGE).subnets(new_prefix=prefix))
    random.shuffle(candidates)
    for cand in candidates:
        if not any(cand.overlaps(u) and u.prefixlen > 0 for u in used):
            return cand
    pytest.skip(f"no free /{prefix} left in {sandbox.ROOT_NS_RANGE} for a libvirt network")
    return None


class Sandbox:
    """A pillar example rewritten onto ``kvt-`` objects on this host, and everything it made."""

    def __init__(self, env, pillar, workdir):
        self.env = env
        self.conn = env.conn
        self.original = pillar
        self.workdir = pathlib.Path(workdir)
        self.pillar = copy.deepcopy(pillar)
        self.limits = {}  # part -> reason
        self.names = {}  # (kind, original) -> kvt name
        self.lan = None
        self.vms, self.loops, self.vgs, self.made = [], [], [], []
        self.server = None
        self.etc = {}

    def name(self, kind, original, letter):
        key = (kind, original)
        if key not in self.names:
            self.names[key] = sandbox.uid(letter)
            self.made.append(self.names[key])
        return self.names[key]

    # -- rewriting ----------------------------------------------------------------------

    def build(self):
        kvm = self.pillar["kvm"]
        for part, spec in _parts(self.original["kvm"]):
            reason = _limit(part, spec, self.env)
            if reason:
                self.limits[part] = reason
        if "connection" in kvm:
            kvm["connection"] = {"uri": sandbox.URI}
        self._bridges(kvm)
        self._networks(kvm)
        self._pools(kvm)
        self._vms(kvm)
        self._snapshots(kvm)
        for key in [
            k
            for k in ("bridges", "networks", "pools", "vms", "snapshots")
            if k in kvm and not kvm[k]
        ]:
            del kvm[key]
        schema.validate_pillar(kvm)  # the rewritten pillar is still valid
        return self

    def _bridges(self, kvm):
        bridges = kvm.get("bridges") or {}
        new = {}
        uplink = None
        for name, spec in bridges.items():
            if f"bridges:{name}" in self.limits:
                continue
            spec = dict(spec or {})
            if not spec.get("absent") and _ports(spec) and uplink is None:
                uplink = (name, spec)
            new[self.name("bridge", name, "b")] = spec
        if not new:
            kvm.pop("bridges", None)
            return
        kvm["bridges"] = new
        host_addr, gateway = "192.0.2.10/24", "192.0.2.1/24"
        nic = "eno1"
        if uplink:
            spec = uplink[1]
            first = _ports(spec)[0]
            nic = (first if isinstance(first, str) else first["name"]).split(".")[0]
            v4 = [a for a in spec.get("addresses", []) if ipaddress.ip_interface(a).version == 4]
            if v4:
                host_addr = v4[0]
            if spec.get("gateway"):
                gateway = f"{spec['gateway']}/{ipaddress.ip_interface(host_addr).network.prefixlen}"
        self.lan = sandbox.Lan(
            tag=uuid.uuid4().hex[:6], host_addr=host_addr, gateway=gateway, nic=nic
        )
        self.lan.create()
        present = {nic}
        for spec in new.values():
            if spec.get("absent"):
                continue
            for port in _ports(spec):
                pname = port if isinstance(port, str) else port["name"]
                base = pname.split(".")[0]
                if base not in present:
                    self.lan.add_nic(base, peer=f"kvt{uuid.uuid4().hex[:8]}")
                    present.add(base)
        if any((spec.get("persist") or "none") != "none" for spec in new.values()):
            for directory in ETC_DIRS:
                copy_dir = self.workdir / "etc" / directory.strip("/").replace("/", "-")
                if os.path.isdir(directory):
                    shutil.copytree(directory, copy_dir, symlinks=True)
                    self.etc[directory] = copy_dir

    def _networks(self, kvm):
        networks = kvm.get("networks") or {}
        new = {}
        for name, spec in networks.items():
            spec = copy.deepcopy(spec or {})
            bridge = spec.get("bridge")
            if spec.get("mode") == "bridge" and f"bridges:{bridge}" in self.limits:
                self.limits[f"networks:{name}"] = (
                    f"its bridge {bridge} is not applied here ({self.limits[f'bridges:{bridge}']})"
                )
                continue
            if spec.get("mode") == "bridge":
                spec["bridge"] = self.name("bridge", bridge, "b")
            elif bridge:
                spec["bridge"] = self.name("virbr", bridge, "v")
            for key in ("address6", "dhcp6"):
                if spec.pop(key, None) is not None:
                    self.limits.setdefault(
                        f"networks:{name}:{key}",
                        f"IPv6 is left out: in the root namespace (where libvirtd makes the network's bridge) the tests use only {sandbox.ROOT_NS_RANGE}",
                    )
            if spec.get("address"):
                self._move_network(spec)
            new[self.name("network", name, "n")] = spec
        if new:
            kvm["networks"] = new

    def _move_network(self, spec):
        old = ipaddress.ip_interface(spec["address"])
        subnet = _free_subnet(self.conn)
        last = subnet.num_addresses - 2

        def move(addr):
            offset = int(ipaddress.ip_address(addr)) - int(old.network.network_address)
            return str(subnet.network_address + max(1, min(offset, last)))

        spec["address"] = f"{move(old.ip)}/{subnet.prefixlen}"
        dhcp = spec.get("dhcp")
        if dhcp:
            for key in ("start", "end"):
                if key in dhcp:
                    dhcp[key] = move(dhcp[key])
            if dhcp.get("start") == spec["address"].split("/")[0]:
                dhcp["start"] = str(ipaddress.ip_address(dhcp["start"]) + 1)
            for host in dhcp.get("hosts", []):
                host["ip"] = move(host["ip"])

    def _pools(self, kvm):
        pools = kvm.get("pools") or {}
        new = {}
        for name, spec in pools.items():
            if f"pools:{name}" in self.limits:
                continue
            new_name = self.name("pool", name, "p")
            spec = self.pool_spec(new_name, spec, real=True)
            if f"pools:{name}:volumes" in self.limits:
                spec.pop("volumes", None)
            new[new_name] = spec
        if new:
            kvm["pools"] = new
        else:
            kvm.pop("pools", None)

    def pool_spec(self, new_name, spec, real):
        spec = copy.deepcopy(spec)
        if spec.get("absent"):
            return spec
        ptype = spec.get("type")
        source = spec.get("source") or {}
        if ptype in ("dir", "fs", "netfs"):
            spec["target"] = sandbox.files_dir(new_name) + ("/mnt" if ptype != "dir" else "")
        elif "target" in spec:
            spec["target"] = sandbox.files_dir(new_name)
        if "hosts" in source:
            source["hosts"] = ["127.0.0.1:6789" if ptype == "rbd" else "127.0.0.1"]
        if ptype == "logical":
            source["name"] = sandbox.uid("vg-")
            if real:
                source["devices"] = [self._loop(64 * M)]
                self.vgs.append(source["name"])
            else:
                source["devices"] = [os.path.join(sandbox.files_dir(new_name), "no-device")]
        elif ptype in ("fs", "disk"):
            source["devices"] = [os.path.join(sandbox.files_dir(new_name), "no-device")]
        if ptype == "rbd" and real and self.env.ceph:
            ceph = self.env.ceph
            source["name"] = ceph.pool
            if "auth" in source:
                source["auth"] = {"type": "ceph", "username": ceph.user, "secret": ceph.key}
        if source:
            spec["source"] = source
        if real:
            self._volumes(spec)
        return spec

    def _loop(self, size):
        directory = sandbox.files_dir(sandbox.uid("loop-"))
        self.made.append(os.path.basename(directory))
        backing = os.path.join(directory, "backing.img")
        with open(backing, "wb") as fh:
            fh.truncate(size)
        dev = subprocess.run(
            ["losetup", "-f", "--show", backing], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.loops.append(dev)
        return dev

    def _volumes(self, spec):
        sparse = spec.get("type") in ("dir", "fs", "netfs")
        for vname, vol in (spec.get("volumes") or {}).items():
            if vol.get("absent"):
                continue
            if "size" in vol:
                size = units.parse_size(vol["size"])
                prealloc = vol.get("preallocation") not in (None, False, "off", "metadata")
                cap = 1024 * M if sparse and not prealloc else 16 * M
                vol["size"] = min(size, cap)
            if vol.get("source"):
                vol["source"], vol["sha256"] = self._source(vname, vol["source"], vol.get("format"))
            backing = vol.get("backing")
            if backing and backing.startswith("/"):
                path = os.path.join(self._files(), os.path.basename(backing))
                sandbox.qemu_img("create", "-q", "-f", "qcow2", path, "16M")
                vol["backing"] = path

    def _files(self):
        if not hasattr(self, "_files_dir"):
            self._files_dir = sandbox.files_dir(sandbox.uid("src-"))
            self.made.append(os.path.basename(self._files_dir))
        return self._files_dir

    def _source(self, vname, source, fmt=None):
        """A small local image standing for ``source``: its path (or URL) and sha256
        (a real qcow2 image where the volume says qcow2: volumes may be built on it)."""
        path = os.path.join(self._files(), os.path.basename(source.rstrip("/")) or vname)
        if fmt == "qcow2":
            sandbox.qemu_img("create", "-q", "-f", "qcow2", path, "16M")
        else:
            with open(path, "wb") as fh:
                fh.write(os.urandom(64 * 1024))
                fh.truncate(M)
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        if source.startswith(("http://", "https://")) and self.lan is None:
            # (with bridges, salt-call runs in the sandbox's netns, where this test's
            # loopback server cannot be reached: the file itself stands in for the URL)
            if self.server is None:
                self.server = FileServer(self._files())
            return f"{self.server.url}/{os.path.basename(path)}", digest
        return path, digest

    def _vms(self, kvm):
        """Declared VMs on the sandbox's pools and networks, small (no OS boots from the
        stand-in images). A NIC on a host bridge is left out: libvirtd makes the VM's tap in
        the root namespace, while the sandbox's bridges live in a netns (VMs on declared
        bridges are tested in test_guest_vms.py)."""
        vms = kvm.get("vms") or {}
        new = {}
        for name, spec in vms.items():
            spec = copy.deepcopy(spec or {})
            new_name = self.name("vm", name, "vm")
            self.vms.append(new_name)
            new[new_name] = spec
            if spec.get("absent"):
                continue
            for key in ("memory", "max_memory"):
                if key in spec:
                    spec[key] = min(units.parse_size(spec[key]), 128 * M)
            if spec.pop("cpu", None):
                # nested KVM (the CI machines) refuses host-model's MSRs: "failed to set MSR 0x10a"
                self.limits[f"vms:{name}:cpu"] = (
                    "the CPU model is left to libvirt: nested KVM here refuses host-model's MSRs (test_vms.py::test_cpu_mode_is_defined_and_converges defines each mode on a shut-off VM)"
                )
            for disk in spec.get("disks") or []:
                disk["pool"] = self.names.get(("pool", disk["pool"]), disk["pool"])
                if "size" in disk:
                    disk["size"] = min(units.parse_size(disk["size"]), 16 * M)
            nics = []
            for nic in spec.get("nics") or []:
                if nic.get("bridge"):
                    self.limits[f"vms:{name}:nics:{nic['bridge']}"] = (
                        "a VM's tap is made in the root namespace; the sandbox's bridges are in a netns (tested in test_guest_vms.py)"
                    )
                    continue
                nic["network"] = self.names.get(("network", nic["network"]), nic["network"])
                nics.append(nic)
            if "nics" in spec:
                spec["nics"] = nics
        if new:
            kvm["vms"] = new

    def _snapshots(self, kvm):
        snaps = kvm.get("snapshots") or {}
        declared = self.original["kvm"].get("vms") or {}
        new = {}
        for vm, spec in snaps.items():
            if f"snapshots:{vm}" in self.limits:
                continue
            name = self.name("vm", vm, "vm")
            if vm not in declared:  # a VM the pillar does not declare: a tiny one stands for it
                sandbox.make_vm(self.conn, name=name, start=True)
                self.vms.append(name)
            new[name] = spec
        if new:
            kvm["snapshots"] = new
        else:
            kvm.pop("snapshots", None)

    # -- running ------------------------------------------------------------------------

    def salt_call(self, call, *args):
        """The real salt-call, in the sandbox's netns, with private /etc copies."""
        cmd = call.command(*args, out="json")
        if self.lan:
            cmd = ["ip", "netns", "exec", self.lan.host, *cmd]
        if self.etc:
            binds = " && ".join(
                f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}"
                for dst, src in self.etc.items()
            )
            cmd = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f'{binds} && exec "$@"',
                "sh",
                *cmd,
            ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=600,
            env=call.env,
            cwd=str(call.root),
            check=False,
        )
        try:
            data = json.loads(proc.stdout)["local"]
        except (ValueError, KeyError):
            data = proc.stdout
        return proc.returncode, data, proc.stderr

    def remove(self):
        for name in self.vms:
            sandbox.remove_vm(self.conn, name)
        sandbox.remove_named(
            self.made
        )  # pools (a logical pool's VG deactivated), networks, secrets
        for vg in self.vgs:
            subprocess.run(["vgremove", "-f", vg], check=False, capture_output=True)
        for dev in self.loops:
            subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)
        sandbox.remove_named(self.made)
        if self.lan:
            self.lan.remove()
        if self.server:
            self.server.stop()


def _pillar_needs_ceph(pillar):
    return any(
        (spec or {}).get("type") == "rbd" for spec in (pillar["kvm"].get("pools") or {}).values()
    )


def _secret_texts(pillar):
    out = []
    for spec in (pillar["kvm"].get("pools") or {}).values():
        auth = ((spec or {}).get("source") or {}).get("auth") or {}
        if auth.get("secret"):
            out.append(auth["secret"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", PILLAR_FILES, ids=_rel)
def test_pillar_example_applies_for_real(path, env):
    pillar = _pillar(path)
    if _pillar_needs_ceph(pillar):
        env.need_ceph()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="kvt-docs-"))
    box = Sandbox(env, pillar, workdir)
    try:
        box.build()
        kvm = box.pillar["kvm"]
        applied = [k for k in ("bridges", "networks", "pools", "vms", "snapshots") if kvm.get(k)]
        if not applied:
            pytest.skip(
                f"nothing of {_rel(path)} can be applied here: "
                + "; ".join(f"{p}: {r}" for p, r in box.limits.items())
            )
        call = SaltCall(workdir / "salt", file_roots=[repo_file_root(workdir / "file-root")])
        full = dict(box.pillar)
        (call.pillar_dir / "kvm.sls").write_text(yaml.safe_dump(full, default_flow_style=False))
        before = box.lan.dump() if box.lan else None

        code, data, err = box.salt_call(call, "state.apply", "kvm")
        results = state_results(data)
        failed = {sid: ret["comment"] for sid, ret in results.items() if ret["result"] is not True}
        assert code == 0 and results and not failed, (
            f"first apply of {_rel(path)} failed: {failed or data}\n{err[-2000:]}"
        )
        assert changed(data), "the first apply changed nothing"
        if os.environ.get(
            "KVT_SHOW_CHANGES"
        ):  # to write the docs' "what you will see" from a real run
            print(json.dumps(changed(data), indent=1, default=str))
        for secret in _secret_texts(full):
            assert secret not in json.dumps(data) and secret not in err, (
                "a pool secret shows in the state output"
            )

        code, data, err = box.salt_call(call, "state.apply", "kvm")
        again = changed(data)
        assert code == 0 and not again, (
            f"second apply of {_rel(path)} changed {again}\n{err[-2000:]}"
        )
        assert len(state_results(data)) == len(results)

        _check_host(box, kvm, before)
        _undo(box, call, kvm)
        for job, spec in (full.get("schedule") or {}).items():
            # what Salt's scheduler runs, run now: converged, so nothing changes
            code, data, err = box.salt_call(call, spec["function"], *(spec.get("args") or []))
            assert code == 0 and state_results(data) and not changed(data), (
                f"schedule:{job}: {data}\n{err[-2000:]}"
            )
    finally:
        box.remove()
        shutil.rmtree(workdir, ignore_errors=True)


def _check_host(box, kvm, before):
    """The host as the pillar says (a few independent reads, beside the states' own verify)."""
    conn = box.conn
    pools = {p.name(): p for p in conn.listAllStoragePools(0)}
    for name, spec in (kvm.get("pools") or {}).items():
        if spec.get("absent"):
            assert name not in pools
            continue
        assert pools[name].isActive(), f"pool {name} is not running"
        vols = set(pools[name].listVolumes())
        for vname, vol in (spec.get("volumes") or {}).items():
            assert (vname in vols) != bool(vol.get("absent")), (
                f"volume {vname} of {name}: {sorted(vols)}"
            )
    nets = {n.name(): n for n in conn.listAllNetworks(0)}
    for name, spec in (kvm.get("networks") or {}).items():
        assert (name in nets) != bool(spec.get("absent"))
    import libvirt  # pylint: disable=import-outside-toplevel

    for vm, spec in (kvm.get("vms") or {}).items():
        want = "absent" if spec.get("absent") else spec.get("state", "running")
        try:
            dom = conn.lookupByName(vm)
        except libvirt.libvirtError:
            dom = None
        have = (
            "absent" if dom is None else {1: "running", 3: "paused"}.get(dom.info()[0], "stopped")
        )
        assert have == want, f"VM {vm} is {have}, not {want}"
    for vm, spec in (kvm.get("snapshots") or {}).items():
        names = conn.lookupByName(vm).snapshotListNames(0)
        assert [n for n in names if n.startswith(spec.get("prefix", "auto-"))], (
            f"{vm}: no snapshot taken ({names})"
        )
    if box.lan:
        dump = box.lan.dump()
        for name, spec in (kvm.get("bridges") or {}).items():
            links = [link[0] for link in dump["links"]]
            assert (name in links) != bool(spec.get("absent")), f"bridge {name}: {links}"
        assert dump != before
        if any(
            not s.get("absent")
            and box.lan.nic in [p if isinstance(p, str) else p["name"] for p in _ports(s)]
            for s in kvm["bridges"].values()
        ):
            # the uplink moved: the host still reaches its gateway, through the bridge
            assert not [
                a for a in dump["addresses"] if a[0] == box.lan.nic and not a[1].startswith("fe80")
            ]
            assert (
                box.lan.run("ping", "-c", "1", "-W", "2", box.lan.gateway, check=False).returncode
                == 0
            )
    if any(
        (s.get("persist") or "none") != "none" and not s.get("absent")
        for s in (kvm.get("bridges") or {}).values()
    ):
        written = [p for copy_dir in box.etc.values() for p in copy_dir.rglob("*salt-kvm*")]
        assert written, f"persist wrote nothing under the private copies of {sorted(box.etc)}"


def _undo(box, call, kvm):
    """The how-tos' ad hoc undo: VMs removed (their volumes kept), networks stopped and
    undefined, bridges deleted (``force=True``: they carry the host's address), pools undefined."""
    steps = [
        ("kvm.vm_undefine", name)
        for name, spec in (kvm.get("vms") or {}).items()
        if not spec.get("absent")
    ]
    for name, spec in (kvm.get("networks") or {}).items():
        if not spec.get("absent"):
            steps += [("kvm.network_stop", name), ("kvm.network_undefine", name)]
    for name, spec in (kvm.get("bridges") or {}).items():
        if not spec.get("absent"):
            steps.append(("kvm.bridge_delete", name, "force=True"))
    for name, spec in (kvm.get("pools") or {}).items():
        if not spec.get("absent"):
            steps += [("kvm.pool_stop", name), ("kvm.pool_undefine", name)]
    for step in steps:
        code, data, err = box.salt_call(call, *step)
        assert code == 0, f"{' '.join(step)}: {data}\n{err[-1000:]}"
    if box.lan:
        links = [link[0] for link in box.lan.dump()["links"]]
        assert not set(kvm.get("bridges") or {}) & set(links)
    left = {p.name() for p in box.conn.listAllStoragePools(0)} | {
        n.name() for n in box.conn.listAllNetworks(0)
    }
    assert not (set(kvm.get("pools") or {}) | set(kvm.get("networks") or {})) & left


@pytest.mark.parametrize("path,part", _limited_parts())
def test_pillar_example_part_beyond_this_host(path, part, env, kvm):
    """A part this host may not run: its pool is still defined and undefined in libvirt
    (libvirt validates it); then the test skips with the reason when the part cannot run."""
    pillar = _pillar(path)
    spec = dict(_parts(pillar["kvm"]))[part]
    if spec.get("type") == "rbd":
        env.need_ceph()
    reason = _limit(part, spec, env)
    if part.startswith("pools:") and not part.endswith(":volumes") and not spec.get("absent"):
        from tests.support.storage_servers import backend_missing  # pylint: disable=import-outside-toplevel

        missing = backend_missing(env.conn, spec["type"])
        if missing:
            pytest.skip(missing)
        box = Sandbox(env, pillar, tempfile.mkdtemp(prefix="kvt-docs-"))
        name = box.name("pool", part.split(":")[1], "p")
        try:
            defined = box.pool_spec(name, spec, real=False)
            defined.pop("volumes", None)
            for key in ("autostart", "build", "force"):
                defined.pop(key, None)
            shown = kvm.pool_define(name, **defined)
            assert shown["type"] == spec["type"] and shown["state"] == "inactive"
            for secret in _secret_texts(pillar):
                assert secret not in repr(shown)
            kvm.pool_undefine(name)
            assert name not in kvm.pool_list()
        finally:
            box.remove()
            shutil.rmtree(box.workdir, ignore_errors=True)
    if reason:
        pytest.skip(f"{part} of {_rel(path)} not applied here: {reason}")


def test_every_example_file_is_run():
    """Nothing under docs/examples escapes the tests above."""
    files = _example_files()
    assert files
    for path in files:
        assert path in PILLAR_FILES or path in SLS_FILES or path in OTHER_FILES
    # anything else there (a picture, a script) is shown as it is, never a Salt example
    assert not [p for p in OTHER_FILES if p.suffix in (".sls",)], (
        "an SLS example that is neither pillar nor states"
    )
    assert any(p.suffix == ".sls" for p in SLS_FILES), "the orchestration example is an SLS file"
    assert base64.b64decode(
        _pillar(EXAMPLES / "howto-pool-ceph.sls")["kvm"]["pools"]["ceph-vms"]["source"]["auth"][
            "secret"
        ],
        validate=True,
    )
