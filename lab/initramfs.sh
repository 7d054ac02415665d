#!/usr/bin/env bash
# Builds $CACHE/base.cpio.gz: busybox-static, dmsetup and its libraries, the
# device-mapper modules (decompressed, in dependency order) and /init, which
# loads them, waits for the disks, runs /test.sh and powers off.
set -euo pipefail
LAB=$(cd "$(dirname "$0")" && pwd)
. "$LAB/env.sh"
. "$LAB/rootfs.sh"
MODS="virtio_blk dm-mod dm-snapshot crc32c_generic libcrc32c dm-persistent-data dm-bio-prison dm-clone"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
rootfs_skeleton "$root"
: > "$root/lib/modules/load.list"
for m in $MODS; do
    modprobe -d "$CACHE/kernel" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r p; do
    b=$(basename "$p"); b=${b%.xz}
    case "$p" in *.xz) xz -dc "$p" > "$root/lib/modules/$b" ;; *) cp "$p" "$root/lib/modules/$b" ;; esac
    echo "$b" >> "$root/lib/modules/load.list"
done
cat > "$root/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export DM_DISABLE_UDEV=1
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
dmesg -n 1
for m in $(cat /lib/modules/load.list); do insmod /lib/modules/$m || echo "LAB: insmod $m failed"; done
n=$(sed -n 's/.*lab.ndisks=\([0-9]*\).*/\1/p' /proc/cmdline)
for i in $(seq 200); do [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -ge "${n:-0}" ] && break; sleep 0.05; done
echo "=== LAB TEST START"
sh /test.sh; rc=$?
echo "=== LAB TEST EXIT rc=$rc"
echo "=== LAB KLOG"
dmesg | grep -E 'device-mapper|snapshot|clone' | grep -v 'ioctl: 4' | sed 's/^\[[ 0-9.]*\] //'
sync
poweroff -f
INIT
chmod +x "$root/init"
mkdir -p "$CACHE"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1) > "$CACHE/base.cpio.gz.new"
mv "$CACHE/base.cpio.gz.new" "$CACHE/base.cpio.gz"
echo "lab: built $CACHE/base.cpio.gz ($(du -h "$CACHE/base.cpio.gz" | cut -f1))"
