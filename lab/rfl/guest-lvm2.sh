#!/bin/bash
# guest-lvm2.sh: runs as /lab/guest.sh in the lvm2 guest (lvm2.sh), started
# by the root image's /sbin/lab-init (PID 1). /lab (vdb) holds the modules of
# our kernel, dm_rs.ko, lvm2's test suite laid out as its installed form
# (/usr/share/lvm2-testsuite, /usr/libexec/lvm2-testsuite, lvm2-testsuite)
# and the test list. lvm2.mode=c: the C targets, loaded on demand by lvm2's
# own `modprobe dm-snapshot`; lvm2.mode=rs: dm_rs.ko alone under the
# kernel's names, dm-snapshot.ko and dm-clone.ko deleted and their modprobe
# replaced by /bin/false. Results (the runner's list, per-test logs, which
# module served) are written as a tar to vdc.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/lock/lvm /run/lvm
hostname lvm2lab
mode=$(sed -n 's/.*lvm2\.mode=\([a-z]*\).*/\1/p' /proc/cmdline)
kver=$(uname -r)
R=/tmp/results
mkdir -p "$R" /lib/modules
cp -a "/lab/modules/$kver" /lib/modules/
cp -a /lab/testsuite/. /
if [ "$mode" = rs ]; then
    find "/lib/modules/$kver" \( -name 'dm-snapshot.ko*' -o -name 'dm-clone.ko*' \) -delete
    printf 'install dm-snapshot /bin/false\ninstall dm-clone /bin/false\n' > /etc/modprobe.d/dmrs-lab.conf
    depmod
    insmod /lab/dm_rs.ko || echo "LVM2LAB: insmod dm_rs.ko failed"
else
    depmod
fi
served() {
    echo "-- $1: lsmod"; lsmod | awk 'NR>1{print $1}' | sort
    echo "-- $1: dmsetup targets"; dmsetup targets | sort
    echo "-- $1: modprobe -n -v dm-snapshot"; modprobe -n -v dm-snapshot 2>&1
}
{ echo "mode=$mode kernel=$kver"; served before; } > "$R/served.txt" 2>&1
echo "=== LVM2LAB START mode=$mode"
export LVM_TEST_PREFER_BRD=0 LVM_TEST_DIR=/tmp
tests=$(cat /lab/tests)
start=$(date +%s)
lvm2-testsuite --testdir /usr/share/lvm2-testsuite --outdir "$R" \
    --flavours ndev-vanilla --only "$tests" --timeout "${LVM2_TIMEOUT:-600}" \
    2>&1 | tee "$R/runner.out"
echo "runner rc=${PIPESTATUS[0]} in $(( $(date +%s) - start ))s" | tee -a "$R/runner.out"
served after >> "$R/served.txt" 2>&1
dmesg > "$R/dmesg.txt"
tar -C /tmp -cf /dev/vdc results
sync
echo "=== LVM2LAB DONE"
# PID 1 exiting panics the kernel; panic=-1 reboots and qemu -no-reboot exits.
exit 0
