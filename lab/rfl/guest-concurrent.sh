# Guest script (run by rfl/concurrent.sh): several dd writers at once on
# the origin and the snapshot, for the C targets (T=) and dm_rs (T=r), on
# disks $O (origin, 64 MiB) and $C (COW). Prints, per target set, the
# snapshot status and checksums of what the origin and the snapshot read
# back; they must be equal for C and Rust. (Throughput: bench.sh.)
export DM_DISABLE_UDEV=1
pat() { yes "$(printf "%-15.15s" "$1")" | head -c "$2"; }
run() { # run PREFIX ORIGIN_DEV COW_DEV
    p=$1 O=$2 C=$3
    if [ -n "$p" ]; then so=${p}snap-origin; sn=${p}snapshot; else so=snapshot-origin; sn=snapshot; fi
    dd if=/dev/zero of=$C bs=4096 count=1 conv=notrunc 2>/dev/null
    dmsetup create origin --table "0 131072 $so $O" || return 1
    dmsetup suspend origin
    dmsetup create snap --table "0 131072 $sn $O $C P 16" || return 1
    dmsetup resume origin
    # 4 origin writers (one chunk each write) and 2 snapshot writers (12 KiB
    # across chunk boundaries, sharing chunks with each other and with the
    # origin writers), 3 readers. Whatever the order, the snapshot reads
    # BASE plus its own writes and the origin BASE plus the origin's.
    for w in 0 1 2 3; do
        ( i=0; while [ $i -lt 16 ]; do
            dd if=/tmp/pat.O$w of=/dev/mapper/origin bs=4096 seek=$(( (i*4 + w) * 2 )) count=2 oflag=direct 2>/dev/null
            i=$((i+1)); done ) &
    done
    for w in 0 1; do
        ( i=0; while [ $i -lt 16 ]; do
            dd if=/tmp/pat.S$w of=/dev/mapper/snap bs=4096 seek=$(( 1 + (i*2 + w) * 3 )) count=3 oflag=direct 2>/dev/null
            i=$((i+1)); done ) &
    done
    for r in 0 1 2; do
        ( dd if=/dev/mapper/snap of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null ) &
    done
    wait
    echo "status: $(dmsetup status snap | cut -d' ' -f4-)"
    echo "origin: $(dd if=/dev/mapper/origin bs=1M count=64 2>/dev/null | md5sum | cut -c1-32)"
    echo "snap:   $(dd if=/dev/mapper/snap bs=1M count=64 2>/dev/null | md5sum | cut -c1-32)"
    dmsetup remove snap; dmsetup remove origin
}
for w in 0 1 2 3; do pat ORIGIN$w 8192 > /tmp/pat.O$w; done
for w in 0 1; do pat SNAP$w 12288 > /tmp/pat.S$w; done
dd if=/dev/zero of=/dev/vda bs=1M count=64 2>/dev/null; pat BASE 67108864 > /dev/vda
dd if=/dev/vda of=/dev/vdc bs=1M count=64 2>/dev/null
echo "== C"; run "" /dev/vda /dev/vdb || exit 1
echo "== dm_rs"; run r /dev/vdc /dev/vdd || exit 1
