# Pillar for the hypervisors (docs/howto/scheduled-snapshots.rst): a retention
# policy per VM, and Salt's scheduler applying kvm.snapshots every hour.
kvm:
  snapshots:
    web01: {every: 1d, keep: 7}
    db01: {every: 6h, keep: 8, memory: false, prefix: auto-}

schedule:
  kvm-snapshots:
    function: state.apply
    args:
      - kvm.snapshots
    hours: 1
    splay: 300
    maxrunning: 1
    return_job: false
