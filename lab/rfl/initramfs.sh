#!/usr/bin/env bash
# initramfs.sh KOUT DM_RS_KO OUT: the guest initramfs for our kernel:
# busybox, dmsetup, the C dm-snapshot/dm-clone modules of that build and
# dm_rs.ko. /init loads the C modules (unless lab.noc is on the command
# line), then `insmod dm_rs.ko prefix=<p>` (lab.prefix=, default none),
# runs /test.sh between the same markers as the stock lab's, unloads
# dm_rs and prints the kernel log lines that matter (dm messages, warnings,
# lockdep, kmemleak).
set -euo pipefail
KOUT=$1 KO=$2 OUT=$3
. "$(dirname "$0")/../rootfs.sh"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
rootfs_skeleton "$root"
kver=$(ls "$KOUT/modroot/lib/modules")
: > "$root/lib/modules/load.list"
for m in dm-snapshot dm-clone; do
    modprobe -d "$KOUT/modroot" -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r p; do
    cp "$p" "$root/lib/modules/"
    basename "$p" >> "$root/lib/modules/load.list"
done
cp "$KO" "$root/lib/modules/dm_rs.ko"
cat > "$root/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export DM_DISABLE_UDEV=1
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
dmesg -n 1
# lab.noc: leave the C targets out (dm_rs then takes the kernel's names).
grep -q 'lab.noc' /proc/cmdline ||
    for m in $(cat /lib/modules/load.list); do insmod /lib/modules/$m || echo "LAB: insmod $m failed"; done
prefix=$(sed -n 's/.*lab.prefix=\([A-Za-z0-9_-]*\).*/\1/p' /proc/cmdline)
insmod /lib/modules/dm_rs.ko ${prefix:+prefix=$prefix} || { echo "LAB: insmod dm_rs.ko failed"; dmesg | tail -5; }
n=$(sed -n 's/.*lab.ndisks=\([0-9]*\).*/\1/p' /proc/cmdline)
for i in $(seq 200); do [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -ge "${n:-0}" ] && break; sleep 0.05; done
echo "=== LAB TEST START"
sh /test.sh; rc=$?
echo "=== LAB TEST EXIT rc=$rc"
dmsetup remove_all >/dev/null 2>&1
rmmod dm_rs || echo "LAB: rmmod dm_rs failed"
if [ -e /sys/kernel/debug/kmemleak ]; then
    echo scan > /sys/kernel/debug/kmemleak; sleep 1; echo scan > /sys/kernel/debug/kmemleak
    grep -c 'unreferenced object' /sys/kernel/debug/kmemleak | sed 's/^/kmemleak: unreferenced objects: /'
fi
echo "=== LAB KLOG"
dmesg | grep -E 'device-mapper|snapshot|clone|dm_rs|WARNING|BUG|lockdep|possible .* locking|circular|kmemleak|Call Trace' | grep -v 'ioctl: 4' | sed 's/^\[[ 0-9.]*\] //'
sync
reboot -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1) > "$OUT.new"
mv "$OUT.new" "$OUT"
