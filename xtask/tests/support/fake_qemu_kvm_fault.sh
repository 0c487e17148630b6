#!/bin/sh
# A stand-in for qemu-system-x86_64 on a host whose KVM faults: the one fake
# of guests_local.rs, since a real KVM fault cannot be made on demand.
#
# What it stands in for (seen on a 2-core Debian 12 host, qemu 7.2): /dev/kvm
# works and runs edgelab's boot-sector probe, but a real guest kernel under
# `-accel kvm` dies at once with an emulation failure (`lock cmpxchg16b`).
# qemu then prints, on stderr, what accel/kvm/kvm-all.c's
# kvm_handle_internal_error prints ("KVM internal error. Suberror: %d", one
# "extra data[%d]: 0x%016" PRIx64 line per data word, "emulation failure"),
# dumps the vCPU's registers, stops the VM in the `internal-error` run state
# and stays alive, paused, with nothing on the serial console, until killed.
#
# Seen on the same host another time: the kernel under KVM printed nothing
# at all for 101 s, then qemu printed the same fault. A `stall-seconds` file
# beside this script's link (its folder on PATH) makes it stay silent that
# long before the fault.
#
# So: asked for `-accel kvm` with `-kernel` (a real guest), it prints those
# messages and pauses as qemu does; anything else (TCG boots, the probe's
# boot sector) runs the real qemu-system-x86_64, the next one on PATH.
set -eu

self_dir=$(cd "$(dirname "$0")" && pwd)

accel=""
kernel=""
prev=""
for arg in "$@"; do
    case "$prev" in
        -accel) accel="$arg" ;;
        -kernel) kernel="$arg" ;;
    esac
    prev="$arg"
done

if [ "$accel" = kvm ] && [ -n "$kernel" ]; then
    # qemu has been running guest code for a moment when the vCPU faults.
    sleep "$(cat "$self_dir/stall-seconds" 2>/dev/null || echo 1)"
    cat >&2 <<'EOF'
KVM internal error. Suberror: 1
extra data[0]: 0x000000000000000f
extra data[1]: 0x0000000000000000
emulation failure
RAX=0000000000000000 RBX=ffff888003d3a000 RCX=0000000000000000 RDX=0000000000000000
RSI=ffff888003d3a010 RDI=ffff888003d3a000 RBP=ffffc90000013d28 RSP=ffffc90000013d10
R8 =0000000000000000 R9 =0000000000000000 R10=0000000000000000 R11=0000000000000000
R12=ffff888003d3a000 R13=0000000000000000 R14=0000000000000000 R15=0000000000000000
RIP=ffffffff81a6b2c4 RFL=00010246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0000 0000000000000000 00000000 00000000
CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]
SS =0018 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]
DS =0000 0000000000000000 00000000 00000000
CR0=80050033 CR2=0000000000000000 CR3=000000000260c000 CR4=00350ef0
EFER=0000000000000d01
Code=48 8b 47 08 48 89 f3 48 89 d1 48 8b 17 <f0> 48 0f c7 0e 0f 94 c0 5b c3
EOF
    # Paused in `internal-error` until someone kills it, as qemu is.
    exec sleep infinity
fi

old_ifs=$IFS
IFS=:
for dir in $PATH; do
    [ "$dir" = "$self_dir" ] && continue
    if [ -x "$dir/qemu-system-x86_64" ]; then
        IFS=$old_ifs
        exec "$dir/qemu-system-x86_64" "$@"
    fi
done
echo "fake_qemu_kvm_fault.sh: no real qemu-system-x86_64 on PATH (apt-get install qemu-system-x86)" >&2
exit 127
