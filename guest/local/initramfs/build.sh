#!/bin/sh
# build.sh KVER OUT: the local world's initramfs for an OSTree guest under
# qemu, run inside the guest's rootfs at compose time (needs busybox, kmod,
# cpio and ldd there).
#
# Why not dracut's: a systemd initramfs starts systemd twice, and under TCG
# that alone took 20 s of a boot (systemd-analyze: "initrd" 19-24 s, of which
# initrd-switch-root.service 10-12 s, on 2 shared cores). This one loads the
# virtio disk's modules, mounts /dev/vda, lets ostree-prepare-root (the same
# program ostree-prepare-root.service runs in dracut's) set up the deployment
# named by `ostree=`, and switches to its systemd: about 1 s. Failures drop
# to a shell on the console, where the launcher's watchdog sees no verdict.
#
# It also brings up the lab NIC from the kernel command line, in dracut's
# syntax (dracut.cmdline(7), also read by systemd-network-generator):
# `ifname=NAME:MAC` names the NIC with that MAC, `ip=ADDR::GW:NETMASK::NAME:none`
# gives it a static address. The edgelab installer writes both into the
# deployment's kernel arguments. Done here, the address is there before
# systemd starts, so network-online.target waits on nothing: with networkd
# configuring it instead, the link waited for udev's coldplug to name it,
# 14-33 s under TCG with both guests booting.
set -eu
kver=$1
out=$2
mkdir -p /tmp
work=$(mktemp -d /tmp/edgelab-initramfs.XXXXXX)
trap 'rm -rf "$work"' EXIT

copy_with_libs() {
    for file in "$@"; do
        mkdir -p "$work$(dirname "$file")"
        cp -L "$file" "$work$file"
        ldd "$file" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^\t\(\/[^ ]*\) .*/\1/p' | while read -r lib; do
            [ -e "$work$lib" ] && continue
            mkdir -p "$work$(dirname "$lib")"
            cp -L "$lib" "$work$lib"
        done
    done
}

mkdir -p "$work/dev" "$work/proc" "$work/sys" "$work/run" "$work/sysroot" "$work/usr/bin" "$work/usr/lib/modules"
ln -s usr/bin "$work/bin"
ln -s usr/bin "$work/sbin"
ln -s usr/lib "$work/lib"
if [ -d /usr/lib64 ]; then mkdir -p "$work/usr/lib64"; ln -s usr/lib64 "$work/lib64"; fi
copy_with_libs /usr/bin/busybox /usr/lib/ostree/ostree-prepare-root
: > "$work/modules"
for module in virtio_pci virtio_blk virtio_net; do
    modprobe -S "$kver" --show-depends "$module" | while read -r kind path _; do
        [ "$kind" = insmod ] || continue
        grep -qx "$path" "$work/modules" && continue
        mkdir -p "$work$(dirname "$path")"
        cp "$path" "$work$path"
        echo "$path" >> "$work/modules"
    done
done

cat > "$work/init" <<'INIT'
#!/bin/busybox sh
# edgelab's initramfs: the virtio disk, ostree-prepare-root, switch_root.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
while read -r module; do /bin/busybox insmod "$module"; done < /modules
lab_nic() {
    name=; mac=; ip=
    for arg in $(/bin/busybox cat /proc/cmdline); do
        case "$arg" in
            ifname=*:*) value=${arg#ifname=}; name=${value%%:*}; mac=${value#*:} ;;
            ip=*:*:*:*:*:*:none) ip=${arg#ip=} ;;
        esac
    done
    [ -n "$name" ] && [ -n "$mac" ] && [ -n "$ip" ] || return 0
    # Split on ':' (empty fields kept), on purpose unquoted.
    saved_ifs=$IFS
    IFS=:
    # shellcheck disable=SC2086
    set -- $ip
    IFS=$saved_ifs
    address=$1; gateway=$3; netmask=$4; device=$6
    [ "$device" = "$name" ] || { echo "edgelab-initramfs: ip= names $device, ifname= names $name"; return 0; }
    prefix=0
    IFS=.; for octet in $netmask; do
        case "$octet" in
            255) prefix=$((prefix + 8)) ;; 254) prefix=$((prefix + 7)) ;; 252) prefix=$((prefix + 6)) ;;
            248) prefix=$((prefix + 5)) ;; 240) prefix=$((prefix + 4)) ;; 224) prefix=$((prefix + 3)) ;;
            192) prefix=$((prefix + 2)) ;; 128) prefix=$((prefix + 1)) ;;
        esac
    done; IFS=$saved_ifs
    i=0; found=
    while [ -z "$found" ] && [ $i -lt 300 ]; do
        for link in /sys/class/net/*; do
            [ "$(/bin/busybox cat "$link/address" 2>/dev/null)" = "$mac" ] && found=${link##*/}
        done
        [ -n "$found" ] || { /bin/busybox usleep 10000; i=$((i + 1)); }
    done
    [ -n "$found" ] || { echo "edgelab-initramfs: no NIC with MAC $mac"; return 0; }
    [ "$found" = "$name" ] || /bin/busybox ip link set "$found" name "$name" || return 0
    /bin/busybox ip addr add "$address/$prefix" dev "$name" || return 0
    /bin/busybox ip link set "$name" up || return 0
    if [ -n "$gateway" ]; then /bin/busybox ip route add default via "$gateway" dev "$name" || return 0; fi
    echo "edgelab-initramfs: $name ($mac) is $address/$prefix"
}
lab_nic
root=/dev/vda
for arg in $(/bin/busybox cat /proc/cmdline); do
    case "$arg" in root=/dev/*) root=${arg#root=} ;; esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt 1000 ]; do /bin/busybox usleep 10000; i=$((i + 1)); done
/bin/busybox mount -o rw "$root" /sysroot || { echo "edgelab-initramfs: cannot mount $root"; exec /bin/busybox sh; }
/usr/lib/ostree/ostree-prepare-root /sysroot || { echo "edgelab-initramfs: ostree-prepare-root failed"; exec /bin/busybox sh; }
/bin/busybox mount --move /run /sysroot/run
/bin/busybox umount /proc /sys /dev 2>/dev/null
exec /bin/busybox switch_root /sysroot /sbin/init
INIT
chmod +x "$work/init"
# A new file renamed over OUT, never written through it: a composed tree is
# a hardlinked checkout, where OUT's inode is the build repo's own object.
# Reproducible: every file dated SOURCE_DATE_EPOCH (the compose passes it),
# names in a fixed order, inode and device numbers from cpio's counter.
epoch=${SOURCE_DATE_EPOCH:-0}
find "$work" -exec touch -h -d "@$epoch" {} +
(cd "$work" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible) > "$out.new"
mv -f "$out.new" "$out"
