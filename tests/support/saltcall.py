"""Run the real ``salt-call --local`` with a config dir of its own.

Used by the tests that prove the two ways users get the modules, by the demo
and by the benchmarks. ``netns`` runs it inside a network namespace (bridges
are made there; libvirt's socket still answers from inside it).
"""

import json
import os
import pathlib
import subprocess
import sys

import yaml

VENV_BIN = pathlib.Path(sys.executable).parent


class SaltCall:
    def __init__(self, root, file_roots=(), pillar=None, extra_config=None, env=None):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.pillar_dir = self.root / "pillar"
        self.pillar_dir.mkdir(exist_ok=True)
        empty = self.root / "empty"
        empty.mkdir(exist_ok=True)
        config = {
            "id": "kvt-local",
            "file_client": "local",
            "cachedir": str(self.root / "cache"),
            "extension_modules": str(self.root / "cache" / "extmods"),
            "pki_dir": str(self.root / "pki"),
            "log_file": str(self.root / "minion.log"),
            "log_level_logfile": "info",
            "sock_dir": str(self.root / "sock"),
            "file_roots": {"base": [str(p) for p in file_roots] or [str(empty)]},
            "pillar_roots": {"base": [str(self.pillar_dir)]},
            "state_output_diff": True,
        }
        config.update(extra_config or {})
        (self.root / "minion").write_text(yaml.safe_dump(config))
        self.env = dict(os.environ, **(env or {}))
        self.set_pillar(pillar or {})

    def set_pillar(self, kvm_pillar):
        """The ``kvm`` pillar every run of this config gets."""
        (self.pillar_dir / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["kvm"]}}))
        (self.pillar_dir / "kvm.sls").write_text(
            yaml.safe_dump({"kvm": kvm_pillar}, default_flow_style=False)
        )

    def command(self, *args, out="json"):
        cmd = [
            str(VENV_BIN / "salt-call"),
            "--local",
            "-c",
            str(self.root),
            "--retcode-passthrough",
            "-l",
            "quiet",
        ]
        if out:
            cmd.append(f"--out={out}")
        return cmd + [str(a) for a in args]

    def run(self, *args, netns=None, out="json", timeout=600, check=False):
        """Run ``salt-call --local ARGS``; return ``(returncode, data, stderr)``.

        ``data`` is the parsed JSON ``local`` value (or the raw text for other outputs).
        """
        cmd = self.command(*args, out=out)
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=str(self.root),
            check=False,
        )
        data = proc.stdout
        if out == "json":
            try:
                data = json.loads(proc.stdout)["local"] if proc.stdout.strip() else None
            except (ValueError, KeyError):
                data = proc.stdout
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc.returncode, data, proc.stderr


def state_results(data):
    """``{state_id: ret}`` from a ``state.apply`` JSON return (id parsed from Salt's key)."""
    if not isinstance(data, dict):
        return {}
    out = {}
    for key, ret in data.items():
        parts = key.split("_|-")
        out[parts[1] if len(parts) > 1 else key] = ret
    return out


def changed(data):
    return {sid: ret["changes"] for sid, ret in state_results(data).items() if ret.get("changes")}


def repo_file_root(dest):
    """A Salt file root that serves this repository as gitfs would: only its
    tracked top-level entries (``kvm/``, ``_modules/``, ``_states/``, ...), as
    symlinks to the one copy in the checkout.

    Pointing ``file_roots`` at the checkout itself also works, but Salt's roots
    backend then walks ``.venv/`` and build output for its file list on every run.
    """
    repo = pathlib.Path(__file__).resolve().parents[2]
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # the loader directories always (one not committed yet is still served), plus
    # whatever git tracks
    entries = {"kvm", "_modules", "_states", "_grains", "_runners", "_output", "pillar.example"}
    try:
        tracked = subprocess.run(
            ["git", "-C", str(repo), "ls-files"], capture_output=True, text=True, check=True
        ).stdout.split()
        entries |= {path.split("/", 1)[0] for path in tracked}
    except (OSError, subprocess.CalledProcessError):
        pass
    for entry in sorted(entries):
        if entry.startswith(".") or not (repo / entry).exists():
            continue
        link = dest / entry
        if not link.exists():
            link.symlink_to(repo / entry)
    return dest
