"""salt-lint finds nothing in the formula (``kvm/*.sls``) nor in the SLS examples
of the docs (``docs/examples/**/*.sls``).

salt-lint (0.9) checks text line by line with regular expressions (whitespace,
tabs, line length, Jinja spacing, file modes, deprecated states, typos of
``require``/``onchanges``); it does not render or parse an SLS. The formula's
``#!py`` files are therefore checked as plain text like any other: the rules
that apply to any text (trailing whitespace, tabs, long lines, irregular
spaces) mean something there, while the Jinja and YAML rules only match
Jinja/YAML-looking text (a Python line ending in ``}}`` would be reported as a
Jinja variable without spaces, so the formula has none).
"""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _salt_lint():
    exe = pathlib.Path(sys.executable).parent / "salt-lint"
    if exe.exists():
        return str(exe)
    found = shutil.which("salt-lint")
    if not found:
        pytest.fail(
            "salt-lint is not installed: it is in the `tests` extra (pip install -e '.[tests]')"
        )
    return found


def _files():
    files = sorted(REPO.glob("kvm/*.sls")) + sorted(REPO.glob("docs/examples/**/*.sls"))
    assert files, "no SLS files found"
    return files


def _lint(files):
    proc = subprocess.run(
        [_salt_lint(), "--json", "--nocolor", *map(str, files)],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        timeout=120,
        check=False,
    )
    findings = json.loads(proc.stdout) if proc.stdout.strip() else []
    return proc, findings


def test_formula_and_doc_examples_are_salt_lint_clean():
    files = _files()
    assert any(f.parent.name == "kvm" and f.read_text().startswith("#!py") for f in files)
    proc, findings = _lint(files)
    shown = "\n".join(
        f"{f['filename']}:{f['linenumber']}: [{f['id']}] {f['message']}: {f['line'].strip()}"
        for f in findings
    )
    assert not findings, f"salt-lint findings:\n{shown}"
    assert proc.returncode == 0, proc.stderr


def test_salt_lint_would_report_a_finding(tmp_path):
    """The check is live: the same run reports a bad line (here in a #!py file)."""
    bad = tmp_path / "bad.sls"
    bad.write_text("#!py\n\n\ndef run():\n    return {}   \n")
    _, findings = _lint([bad])
    assert [f["id"] for f in findings] == ["201"]
