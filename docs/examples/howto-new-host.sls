# Pillar for a new hypervisor (docs/howto/new-host.rst): its bridge on the LAN, a NAT
# network, a pool with a base image imported by checksum, two VMs built on that image
# with cloud-init, and snapshot retention for both.
kvm:
  bridges:
    br0:
      ports: [eno1]                 # the host's address and default route move onto br0
      stp: false
      forward_delay: 0
      probe: {ping: 192.0.2.1, timeout: 20s}
  networks:
    nat:
      mode: nat
      bridge: virbr1
      address: 198.51.100.1/24
      dhcp: {start: 198.51.100.100, end: 198.51.100.200}
      autostart: true
  pools:
    vms:
      type: dir
      target: /srv/kvm/vms
      autostart: true
      volumes:
        debian-12.qcow2:            # imported once; a different file is refused
          source: https://cloud.debian.org/images/cloud/bookworm/20241201-1948/debian-12-genericcloud-amd64-20241201-1948.qcow2
          # sha256sum of that file, once you checked it against Debian's SHA512SUMS
          sha256: 4d6f0c7e9a1e3c2a5b8d0f1e2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3
          format: qcow2
  vms:
    web01:
      memory: 2G
      vcpus: 2
      disks:
        # a copy-on-write child of the base image, made by the state
        - {pool: vms, volume: web01.qcow2, backing: debian-12.qcow2, size: 20G}
      nics:
        - {bridge: br0, mac: "52:54:00:00:01:01"}
        - {network: nat}
      cloud_init:
        user_data:
          hostname: web01
          users:
            - name: ops
              sudo: "ALL=(ALL) NOPASSWD:ALL"
              ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnly ops@example.net"]
          packages: [nginx]
      console: {log: true}
      autostart: true
    db01:
      memory: 4G
      vcpus: 2
      disks:
        - {pool: vms, volume: db01.qcow2, backing: debian-12.qcow2, size: 20G}
        - {pool: vms, volume: db01-data.qcow2, size: 50G, format: qcow2}
      nics:
        - {network: nat}
      cloud_init:
        user_data:
          hostname: db01
          packages: [postgresql]
      console: {log: true}
      autostart: true
  snapshots:
    web01: {every: 1d, keep: 7}
    db01: {every: 6h, keep: 8, memory: false, prefix: auto-}
