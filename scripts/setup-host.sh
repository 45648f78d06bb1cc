#!/usr/bin/env bash
# Make this Debian 12 host ready for salt-kvm's demo and tests: the Debian
# packages libvirt/QEMU need, and libvirtd + virtlogd running (there may be no
# systemd). Idempotent: installs only what is missing, starts only what is down.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Test leftovers first: a kvt- link or libvirt network left in the root namespace
# by an interrupted run could shadow the routes this host needs for apt and pip.
if command -v ip >/dev/null; then
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^kvt-/ {print $1}'); do $SUDO ip netns del "$ns" || true; done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^kvt-' || true); do
    $SUDO ip link del "$link" 2>/dev/null || true
  done
fi
if command -v virsh >/dev/null && virsh -c qemu:///system version >/dev/null 2>&1; then
  for net in $(virsh -c qemu:///system net-list --name 2>/dev/null | grep '^kvt-' || true); do
    $SUDO virsh -c qemu:///system net-destroy "$net" >/dev/null 2>&1 || true
  done
fi

PACKAGES=(
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  qemu-system-x86 qemu-utils dnsmasq-base
  iproute2 iputils-ping parted lvm2 e2fsprogs ifupdown
  gcc time
)
python3 -c 'import ensurepip' 2>/dev/null || PACKAGES+=(python3-venv)
python3 - <<'PY' 2>/dev/null || PACKAGES+=(python3-dev)
import os, sysconfig, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
# extra packages a capability needs (storage backends, persistence parsers, ...)
[ -f scripts/host-packages.txt ] && while read -r pkg _; do
  case "$pkg" in ''|'#'*) ;; *) PACKAGES+=("$pkg") ;; esac
done < scripts/host-packages.txt

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
installed_now=0
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # only libvirt's own packages (drivers, daemon) need a restart; a kernel or busybox for
  # the test guests must not interrupt the VMs and API calls of whoever shares this libvirtd
  case " ${missing[*]}" in *" libvirt"*) installed_now=1 ;; esac
fi

# Debian's udev rule gives /dev/kvm to the kvm group (0660); without udev it can
# stay root:root 0600 and libvirt's qemu user cannot open it.
if [ -e /dev/kvm ] && getent group kvm >/dev/null; then
  [ "$(stat -c %G:%a /dev/kvm)" = "kvm:660" ] || { $SUDO chown root:kvm /dev/kvm; $SUDO chmod 0660 /dev/kvm; }
fi

# libvirtd loads storage backends only when it starts: restart it after installing some.
if [ "$installed_now" = 1 ] && pgrep -x libvirtd >/dev/null; then
  echo "setup-host: restarting libvirtd to load new drivers"
  $SUDO kill "$(cat /run/libvirtd.pid 2>/dev/null || pgrep -x libvirtd)" 2>/dev/null || true
  for _ in $(seq 50); do pgrep -x libvirtd >/dev/null || break; sleep 0.2; done
fi
pgrep -x virtlogd >/dev/null || { echo "setup-host: starting virtlogd"; $SUDO virtlogd -d; }
pgrep -x libvirtd >/dev/null || { echo "setup-host: starting libvirtd"; $SUDO libvirtd -d; }
for _ in $(seq 100); do
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.2
done
echo "setup-host: libvirtd does not answer at qemu:///system" >&2
exit 1
