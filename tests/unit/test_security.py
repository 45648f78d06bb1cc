"""Security, checked statically: no shell, XML only through lxml, bandit clean.

* no module of salt_kvm/, _modules/, _states/, _grains/, _runners/ runs a
  shell: no ``cmd.run`` / ``cmd.shell`` / ``cmd.script``, no ``shell=True``, no
  ``os.system`` / ``os.popen`` / ``os.spawn*`` / ``pty.spawn``, and every
  ``subprocess`` call takes an argument list, never a string;
* no XML is built by string formatting (an f-string, ``%`` or ``.format()``
  whose text holds ``<tag ...>``); XML is parsed only by lxml with entities off
  and no network (never ``xml.etree`` / ``xml.dom`` / ``xml.sax``);
* no ``eval`` / ``exec`` / ``pickle`` / ``yaml.load`` without a safe loader;
* ``bandit -ll`` (medium severity and up) finds nothing new;
* files salt-kvm writes for the host's network configuration get safe modes.

The runtime half (secrets never in output, logs, exceptions or events; volume
file modes) is in tests/functional/test_guards.py.
"""

import ast
import json
import os
import pathlib
import re
import stat
import subprocess
import sys

import pytest
from lxml import etree

from tests.conftest import REPO

SOURCE_DIRS = ("salt_kvm", "_modules", "_states", "_grains", "_runners")


def sources():
    for directory in SOURCE_DIRS:
        root = REPO / directory
        if root.is_dir():
            yield from sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def parsed():
    for path in sources():
        yield (
            path.relative_to(REPO),
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path)),
        )


def dotted(node):
    """``a.b.c`` for an attribute chain / name, else ``None``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def test_there_are_sources_to_check():
    files = [str(p.relative_to(REPO)) for p in sources()]
    assert (
        "salt_kvm/schema/fields.py" in files
        and "_modules/kvm.py" in files
        and "_states/kvm.py" in files
    )


SHELL_FUNCS = {
    "cmd.run",
    "cmd.run_all",
    "cmd.run_stdout",
    "cmd.run_stderr",
    "cmd.shell",
    "cmd.script",
    "cmd.exec_code",
    "cmd.run_bg",
    "cmd.retcode",
    "cmd.powershell",
}
FORBIDDEN_CALLS = {
    "os.system",
    "os.popen",
    "os.execl",
    "os.execlp",
    "os.execv",
    "os.execvp",
    "os.spawnl",
    "os.spawnlp",
    "os.spawnv",
    "os.spawnvp",
    "pty.spawn",
    "commands.getoutput",
    "commands.getstatusoutput",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "eval",
    "exec",
    "pickle.load",
    "pickle.loads",
    "marshal.loads",
    "yaml.unsafe_load",
}
SUBPROCESS_FUNCS = {
    "subprocess.run",
    "subprocess.Popen",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
}


def test_no_shell_is_ever_run():
    problems = []
    for rel, tree in parsed():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.strip() in SHELL_FUNCS
            ):
                problems.append(f"{rel}:{node.lineno}: uses Salt's {node.value.strip()}")
            if not isinstance(node, ast.Call):
                continue
            name = dotted(node.func)
            if name in FORBIDDEN_CALLS:
                problems.append(f"{rel}:{node.lineno}: calls {name}")
            for kw in node.keywords:
                if kw.arg == "shell" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    problems.append(f"{rel}:{node.lineno}: shell={ast.unparse(kw.value)}")
            if name == "yaml.load" and not any(
                kw.arg == "Loader" and "Safe" in ast.unparse(kw.value) for kw in node.keywords
            ):
                problems.append(f"{rel}:{node.lineno}: yaml.load without a safe loader")
    assert not problems, "\n".join(problems)


def _list_like(node, assignments):
    """The first argument of a subprocess call is an argument list (or ``*cmd`` of one)."""
    if isinstance(node, (ast.List, ast.Tuple, ast.ListComp)):
        return True
    if isinstance(node, ast.Starred):
        return True  # f(*args): the caller passes the arguments one by one
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _list_like(node.left, assignments) or _list_like(node.right, assignments)
    if isinstance(node, ast.Name):
        values = assignments.get(node.id, [])
        return bool(values) and all(
            _list_like(v, {}) or isinstance(v, ast.Call) and dotted(v.func) in ("list", "tuple")
            for v in values
        )
    return False


def _calls_by_function(tree):
    """``(function or module, [calls directly in it])`` (nested functions apart)."""

    def visit(scope, node, out):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                out.append((child, []))
                visit(out[-1], child, out)
            else:
                if isinstance(child, ast.Call):
                    scope[1].append(child)
                visit(scope, child, out)

    out = [(tree, [])]
    visit(out[0], tree, out)
    return out


def _assignments(func):
    assignments = {}
    for node in ast.walk(func):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assignments.setdefault(target.id, []).append(node.value)
    if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) and func.args.vararg:
        # def _run(*cmd): subprocess.run(cmd) -- cmd is a tuple of separate arguments
        assignments.setdefault(func.args.vararg.arg, []).append(ast.Tuple(elts=[], ctx=ast.Load()))
    return assignments


def test_subprocesses_take_argument_lists():
    problems, seen = [], 0
    for rel, tree in parsed():
        for func, calls in _calls_by_function(tree):
            assignments = _assignments(func)
            for node in calls:
                if dotted(node.func) not in SUBPROCESS_FUNCS:
                    continue
                seen += 1
                first = (
                    node.args[0]
                    if node.args
                    else next((kw.value for kw in node.keywords if kw.arg == "args"), None)
                )
                if first is None or not _list_like(first, assignments):
                    problems.append(
                        f"{rel}:{node.lineno}: "
                        f"{dotted(node.func)}({ast.unparse(first) if first else ''}) is not "
                        "given an argument list"
                    )
    assert not problems, "\n".join(sorted(set(problems)))
    assert seen, "found no subprocess call at all: the scan is broken"


def test_the_argument_list_check_bites():
    tree = ast.parse(
        "import subprocess\ndef f(name):\n    subprocess.run('qemu-img info ' + name)\n    cmd = "
        "f'rm {name}'\n    subprocess.check_call(cmd)\n"
    )
    bad = [
        c
        for func, calls in _calls_by_function(tree)
        for c in calls
        if dotted(c.func) in SUBPROCESS_FUNCS and not _list_like(c.args[0], _assignments(func))
    ]
    assert len(bad) == 2


#: ``<tag>``, ``</tag>``, ``<tag attr=`` or ``<tag/>`` in the text of a formatted string
_TAG = re.compile(r"</?[A-Za-z_][\w:.-]*(\s+[\w:.-]+\s*=|\s*/?>)")


def _format_text(node):
    """The literal text of a formatting expression (placeholders as ``{}``), or ``None``."""
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Mod)
        and isinstance(node.left, ast.Constant)
        and isinstance(node.left.value, str)
    ):
        return node.left.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        texts = [
            t
            for t in (
                _format_text(node.left),
                _const(node.left),
                _format_text(node.right),
                _const(node.right),
            )
            if t
        ]
        if any(not isinstance(side, ast.Constant) for side in (node.left, node.right)):
            return "".join(texts)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    ):
        return _const(node.func.value)
    return None


def _const(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_no_xml_is_built_from_strings():
    problems = []
    for rel, tree in parsed():
        for node in ast.walk(tree):
            text = _format_text(node)
            if text and _TAG.search(text):
                problems.append(
                    f"{rel}:{node.lineno}: XML built by string formatting: {text[:80]!r}"
                )
    assert not problems, "\n".join(problems)


def test_the_tag_pattern_bites():
    """The scan above would see the usual ways of building XML from strings."""
    for code in [
        'f"<name>{n}</name>"',
        "\"<pool type='%s'>\" % t",
        '"<disk file={}/>".format(p)',
        '"<a>" + x',
        "f\"<source dev='{d}'/>\"",
    ]:
        node = ast.parse(code, mode="eval").body
        assert _TAG.search(_format_text(node) or ""), code
    for code in ['f"<a {kind} too large to show>"', 'f"{a} < {b}"', '"%s is not <= %s" % (a, b)']:
        node = ast.parse(code, mode="eval").body
        assert not _TAG.search(_format_text(node) or ""), code


def test_xml_is_parsed_only_by_lxml_without_entities_or_network():
    problems = []
    for rel, tree in parsed():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                for name in names:
                    if name.split(".")[:2] in (
                        ["xml", "etree"],
                        ["xml", "dom"],
                        ["xml", "sax"],
                    ) or name.startswith("xml.parsers"):
                        problems.append(
                            f"{rel}:{node.lineno}: imports {name} (use lxml with "
                            "salt_kvm.xml.base.PARSER)"
                        )
            if isinstance(node, ast.Call) and dotted(node.func) in (
                "etree.XMLParser",
                "lxml.etree.XMLParser",
            ):
                kws = {kw.arg: ast.unparse(kw.value) for kw in node.keywords}
                if (
                    kws.get("resolve_entities") != "False"
                    or kws.get("no_network", "True") != "True"
                ):
                    problems.append(
                        f"{rel}:{node.lineno}: XMLParser must have resolve_entities=False, "
                        "no_network=True"
                    )
    assert not problems, "\n".join(problems)
    from salt_kvm.xml import base  # pylint: disable=import-outside-toplevel

    evil = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    root = base.parse(evil)
    assert "root:" not in (root.text or "") and "root:" not in etree.tostring(root).decode()


# --- bandit ---------------------------------------------------------------------------------


def _bandit():
    try:
        import bandit  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        pytest.skip("bandit is not installed (pip install -e '.[tests]')")
    dirs = [d for d in SOURCE_DIRS if (REPO / d).is_dir()]
    proc = subprocess.run(
        [sys.executable, "-m", "bandit", "-q", "-ll", "-r", "-f", "json", *dirs],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    data = json.loads(proc.stdout)
    assert not data.get("errors"), data["errors"]
    return data["results"]


def test_bandit_finds_nothing_at_medium_severity():
    results = _bandit()
    lines = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_severity']} {r['issue_text']}"
        for r in results
    ]
    assert not lines, "bandit -ll:\n" + "\n".join(lines)


# --- files written for the host's network configuration ------------------------------------


def test_rendered_network_files_get_safe_modes(tmp_path):
    """NetworkManager keyfiles 0600 (NM ignores others), the rest 0644; never
    group/world-writable."""
    from salt_kvm import persist  # pylint: disable=import-outside-toplevel

    files = {
        str(
            tmp_path / "etc/NetworkManager/system-connections/salt-kvm-kvt0.nmconnection"
        ): "[connection]\nid=kvt0\n",
        str(tmp_path / "etc/systemd/network/10-salt-kvm-kvt0.netdev"): "[NetDev]\nName=kvt0\n",
        str(tmp_path / "etc/network/interfaces.d/salt-kvm-kvt0"): "auto kvt0\n",
    }
    old_umask = os.umask(0)  # the worst umask a minion could run with
    try:
        backup = persist.write(files)
        # an existing file with a loose mode is tightened, too
        loose = next(p for p in files if "NetworkManager" in p)
        os.chmod(loose, 0o666)
        persist.write({loose: "[connection]\nid=kvt0\nchanged=1\n"})
    finally:
        os.umask(old_umask)
    for path in files:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert not mode & 0o022, f"{path} is group/world-writable ({oct(mode)})"
        if "NetworkManager" in path:
            assert mode == 0o600, f"{path}: {oct(mode)}"
        assert not pathlib.Path(path + ".salt-kvm.tmp").exists()
    persist.restore(backup)
    assert not any(pathlib.Path(p).exists() for p in files)
