# salt '*' state.apply kvm: bridges, then libvirt networks, then storage pools
# and volumes, then VMs, then snapshot retention, all from the kvm pillar (pillar.example).
include:
  - kvm.bridges
  - kvm.networks
  - kvm.storage
  - kvm.vms
  - kvm.snapshots
