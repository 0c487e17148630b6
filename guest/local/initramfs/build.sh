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
for module in virtio_pci virtio_blk; do
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
