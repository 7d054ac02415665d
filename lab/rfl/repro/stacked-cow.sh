#!/bin/sh
# Guest script for lab/vm.sh (one 64 MiB disk), e.g. with the rfl initramfs:
#   LAB_KERNEL=$KOUT/arch/x86/boot/bzImage LAB_BASE=<rfl initramfs> LAB_APPEND=lab.noc bash lab/vm.sh lab/rfl/repro/stacked-cow.sh disk.img
# lvm2's snapshot-remove-dmsetup.sh, in dmsetup terms: a snapshot whose
# origin and COW both live on another snapshot (of a zero device); then
# writes to the upper snapshot.
up() { cut -d' ' -f1 /proc/uptime; }
set -e
dmsetup create vorigin --table "0 204800 zero"
dmsetup create lcow --table "0 20480 linear /dev/vda 0"
dmsetup create lower --table "0 204800 snapshot /dev/mapper/vorigin /dev/mapper/lcow P 8"
dmsetup create ureal --table "0 40960 linear /dev/mapper/lower 0"
dmsetup create ucow --table "0 24576 linear /dev/mapper/lower 40960"
dmsetup create uorig --table "0 40960 snapshot-origin /dev/mapper/ureal"
dmsetup suspend uorig
dmsetup create usnap --table "0 40960 snapshot /dev/mapper/ureal /dev/mapper/ucow P 8"
dmsetup resume uorig
set +e
echo "t=$(up) writing 1 MiB to usnap (4 KiB direct writes)"
dd if=/dev/zero of=/dev/mapper/usnap bs=4096 count=256 oflag=direct 2>&1 | tail -1 &
pid=$!
for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2; kill -0 $pid 2>/dev/null || break; done
if kill -0 $pid 2>/dev/null; then
    echo "t=$(up) dd still blocked after 20 s"
    echo "lower: $(dmsetup status lower)"
    echo w > /proc/sysrq-trigger
    dmesg | sed -n '/sysrq: Show Blocked State/,$p' | sed 's/^\[[ 0-9.]*\] //' | grep -v ' ? ' | head -150
    echo "usnap status (in background):"; dmsetup status usnap & sleep 3
    exit 1
fi
wait $pid
echo "t=$(up) done"
echo "lower: $(dmsetup status lower)"; echo "usnap: $(dmsetup status usnap)"
dmsetup remove usnap; dmsetup remove uorig; dmsetup remove ucow; dmsetup remove ureal
dmsetup remove lower; dmsetup remove lcow; dmsetup remove vorigin
