#!/usr/bin/env bash
# make test-kernel: run the tests marked `kernel` (pytest -m kernel) inside
# Debian's own kernel (linux-image-amd64) booted with virtme-ng, for what this
# machine's kernel lacks: bridge VLAN filtering, 802.1Q, device-mapper (LVM),
# NFS, the iSCSI initiator. ONE guest boot runs them all.
#
#   scripts/test-kernel.sh [pytest args...]   (default: every test marked kernel)
#
# The guest sees the host's root filesystem read-only with private overlays
# (its own /run, /etc, /var, /tmp) and starts its own libvirtd/virtlogd, iscsid
# and dbus (scripts/kernel-guest.sh). Results come back through a shared
# directory (.test-kernel/: pytest.log, junit.xml, guest.log, console.log),
# not the console. A failure inside fails this script and prints the guest's log.
#
# Environment: KVT_KERNEL_KVM=0|1 skips the KVM probe; KVT_KERNEL_OUT (the results dir); KVT_KERNEL_MEMORY (3G),
# KVT_KERNEL_CPUS (2), KVT_KERNEL_TIMEOUT (seconds for the guest run, 3600).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=$REPO/.venv/bin/python
OUT=${KVT_KERNEL_OUT:-$REPO/.test-kernel}
MEMORY=${KVT_KERNEL_MEMORY:-3G}
CPUS=${KVT_KERNEL_CPUS:-2}
TIMEOUT=${KVT_KERNEL_TIMEOUT:-3600}
t0=$(date +%s)
say() { echo "test-kernel: $*"; }

# --- what the guest needs, installed on the host (the guest runs the host's files) ---
PACKAGES=(linux-image-amd64 lvm2 thin-provisioning-tools nfs-kernel-server open-iscsi tgt network-manager ifupdown bridge-utils dbus kmod)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  # never let a package start its service on the host (NetworkManager would take over its network)
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || { [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
fi
KVER=$(cd /lib/modules && ls -d *-amd64 2>/dev/null | sort -V | tail -1)
[ -n "$KVER" ] && [ -e "/boot/vmlinuz-$KVER" ] || { echo "test-kernel: no Debian kernel in /boot (apt-get install linux-image-amd64)" >&2; exit 1; }
[ -x "$REPO/.venv/bin/vng" ] || { say "pip install virtme-ng"; "$REPO/.venv/bin/pip" install -q --disable-pip-version-check virtme-ng; }
export PATH="$REPO/.venv/bin:$PATH"

VNG=(vng --force-9p -r "/boot/vmlinuz-$KVER" --memory "$MEMORY" --cpus "$CPUS" --overlay-rwdir "$REPO" --rwdir "$OUT")

# --- KVM or TCG: boot once with KVM and see whether Linux gets to run a command ---
rm -rf "$OUT" && mkdir -p "$OUT"
if [ -n "${KVT_KERNEL_KVM:-}" ]; then
  kvm=$KVT_KERNEL_KVM
elif [ -w /dev/kvm ]; then
  p0=$(date +%s)
  timeout -k 5 30 "${VNG[@]}" --exec "touch $OUT/kvm-ok" </dev/null >"$OUT/kvm-probe.log" 2>&1 || true
  if [ -e "$OUT/kvm-ok" ]; then kvm=1; else kvm=0; fi
  say "KVM probe: $([ $kvm = 1 ] && echo 'Linux boots under KVM' || echo 'Linux does not boot under KVM here, using TCG') ($(( $(date +%s) - p0 )) s)"
else
  kvm=0
fi
[ "$kvm" = 1 ] || VNG+=(--disable-kvm)

# --- one boot runs every kernel test ---
say "booting $KVER ($([ $kvm = 1 ] && echo KVM || echo TCG), $CPUS CPUs, $MEMORY)"
b0=$(date +%s)
# collected here (seconds), not in the guest (minutes under TCG): only the marked tests' ids go in
if [ $# -eq 0 ]; then
  "$PY" -m pytest -m kernel --collect-only -q -p no:cacheprovider tests 2>/dev/null | grep '::' >"$OUT/args" || true
  [ -s "$OUT/args" ] || { echo "test-kernel: no test is marked kernel" >&2; exit 1; }
  say "$(wc -l <"$OUT/args") tests marked kernel"
else
  printf '%s\n' "$@" >"$OUT/args"
fi
set +e
timeout -k 10 "$TIMEOUT" "${VNG[@]}" --exec "bash $REPO/scripts/kernel-guest.sh $OUT" </dev/null >"$OUT/console.log" 2>&1
vng_rc=$?
set -e
say "guest ran $(( $(date +%s) - b0 )) s (vng exit $vng_rc)"

[ -f "$OUT/pytest.log" ] && cat "$OUT/pytest.log"
rc=$(cat "$OUT/rc" 2>/dev/null || echo none)
if [ "$rc" != 0 ]; then
  echo "=== test-kernel FAILED (pytest exit: $rc, vng exit: $vng_rc); the guest's log ($OUT/guest.log) ==="
  tail -n 80 "$OUT/guest.log" 2>/dev/null || echo "(no guest log)"
  echo "=== last lines of the console ($OUT/console.log) ==="
  tail -n 40 "$OUT/console.log"
  exit 1
fi
say "results in $OUT (junit.xml); total $(( $(date +%s) - t0 )) s"
