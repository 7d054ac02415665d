#!/bin/sh
# Guest script for lab/vm.sh (disks: 64 MiB, 32 MiB); lab.noc = dm_rs, lab.prefix=r = C.
# snapshot-merge on an origin whose writes are delayed 200 ms (dm-delay),
# as lvm2's snapshot-merge-stack.sh does; then the COW is swapped for error.
up() { cut -d' ' -f1 /proc/uptime; }
S=102400
dmsetup create pv1 --table "0 131072 linear /dev/vda 0"
dmsetup create pv2 --table "0 65536 linear /dev/vdb 0"
dmsetup create real --table "0 $S linear /dev/mapper/pv1 0"
dmsetup create cow --table "0 40960 linear /dev/mapper/pv2 0"
dmsetup create orig --table "0 $S snapshot-origin /dev/mapper/real"
dmsetup suspend orig
dmsetup create snap --table "0 $S snapshot /dev/mapper/real /dev/mapper/cow P 8"
dmsetup resume orig
dd if=/dev/zero of=/dev/mapper/snap bs=65536 count=120 oflag=direct 2>/dev/null
echo "before merge: $(dmsetup status snap)"
dmsetup remove snap; dmsetup remove orig
dmsetup suspend pv1
dmsetup reload pv1 --table "0 131072 delay /dev/vda 0 0 /dev/vda 0 200"
dmsetup resume pv1
t0=$(up)
dmsetup create orig --table "0 $S snapshot-merge /dev/mapper/real /dev/mapper/cow P 8"
echo "create: $(up) - $t0"; sleep 1
a=$(up); dmsetup table orig; echo "table took from $a to $(up)"
a=$(up); dmsetup status orig; echo "status took from $a to $(up)"
for i in 1 2 3; do sleep 1; echo "t=$(up): $(dmsetup status orig)"; done
dmsetup suspend pv2; dmsetup reload pv2 --table "0 65536 error"; dmsetup resume pv2
echo "pv2 (COW) now error at $(up)"
dmsetup suspend pv1; dmsetup reload pv1 --table "0 131072 linear /dev/vda 0"; dmsetup resume pv1
sleep 1; sync
echo "after COW error, t=$(up): $(dmsetup status orig)"
for i in 1 2 3 4 5; do sleep 2; echo "t=$(up): $(dmsetup status orig)"; done
dmesg | grep -E 'snapshot|dm_rs|Merge|merge' | tail -8
dmsetup remove_all
