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
timeout=$(sed -n 's/.*lvm2\.timeout=\([0-9]*\).*/\1/p' /proc/cmdline)
verbose=$(grep -o 'lvm2\.verbose' /proc/cmdline)
skip=$(sed -n 's/.*lvm2\.skip=\([0-9]*\).*/\1/p' /proc/cmdline); skip=${skip:-0}
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
{ echo "mode=$mode kernel=$kver"; served before; } > "$R/served.$skip.txt" 2>&1
echo "=== LVM2LAB START mode=$mode"
export LVM_TEST_PREFER_BRD=0 LVM_TEST_DIR=/tmp
# One runner per test: a test wedged in the kernel (its processes in D
# state) blocks the runner's waitpid forever; after the runner's own
# timeout plus a margin the test is recorded as "hung", the blocked tasks
# are dumped (sysrq w) into its directory and the guest stops (what the
# wedged test holds can block the next ones, a `sync` for one): lvm2.sh
# boots a fresh guest with lvm2.skip= the tests already run.
limit=$(( ${timeout:-300} + 90 ))
start=$(date +%s)
: > "$R/list.$skip"
i=0
for t in $(tr ',' ' ' < /lab/tests); do
    i=$((i + 1)); [ $i -gt "$skip" ] || continue
    n=$(basename "$t" .sh); d=$R/$n; mkdir -p "$d"
    lvm2-testsuite --testdir /usr/share/lvm2-testsuite --outdir "$d" \
        --flavours ndev-vanilla --only "$t" --timeout "${timeout:-300}" ${verbose:+--verbose} \
        > "$d/runner.out" 2>&1 &
    pid=$! waited=0
    while kill -0 $pid 2>/dev/null && [ $waited -lt $limit ]; do sleep 1; waited=$((waited + 1)); done
    if kill -0 $pid 2>/dev/null; then
        echo "ndev-vanilla:$t hung" >> "$R/list.$skip"
        echo "###         hung: [ndev-vanilla] $t"
        echo w > /proc/sysrq-trigger; sleep 1
        dmesg > "$d/blocked.txt"
        ps -eo pid,stat,wchan:32,args > "$d/ps.txt" 2>&1
        dmsetup info -c --noheadings > "$d/dminfo.txt" 2>&1 &
        kill -9 $pid 2>/dev/null
        break
    fi
    cat "$d/list" >> "$R/list.$skip"
    grep -E '^###' "$d/runner.out"
done
echo "runner done in $(( $(date +%s) - start ))s"
served after >> "$R/served.$skip.txt" 2>&1
dmesg > "$R/dmesg.$skip.txt"
# no sync: a wedged test may hold a filesystem that would never flush
tar -C /tmp -cf - results | dd of=/dev/vdc bs=1M iflag=fullblock oflag=direct 2>/dev/null
echo "=== LVM2LAB DONE"
# PID 1 exiting panics the kernel; panic=-1 reboots and qemu -no-reboot exits.
exit 0
