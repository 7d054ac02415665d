# Guest script (run by rfl/bench.sh): the data paths of the snapshot and
# clone targets, C (T=) and dm_rs (T=r) in one guest, on disks
#   vda/vdb origin/COW (C)   vdc/vdd origin/COW (dm_rs), 128 MiB each
#   vde/vdf clone metadata/destination (C)   vdg/vdh (dm_rs)   vdi clone source
# Every case moves data with busybox dd, O_DIRECT; "par4" is four streams
# at once on disjoint ranges. Prints "bench CASE c|r MB/s" per round
# (ROUNDS, default 5; the order C/dm_rs alternates between rounds) and,
# after each round, checksums of what each side's devices hold, which
# must be equal. TIMING= (debug kernel) runs one small round for the
# paths alone.
export DM_DISABLE_UDEV=1
ROUNDS=${ROUNDS:-5}
MB=${MB:-16}                     # MiB per measured case (each of 4 streams: MB/4)
pat() { yes "$(printf "%-15.15s" "$1")" | head -c "$2"; }
now() { cut -d' ' -f1 /proc/uptime; }
report() { # report CASE SIDE T0 T1 MIB
    [ -n "${TIMING-1}" ] && awk -v c="$1" -v s="$2" -v a="$3" -v b="$4" -v m="$5" \
        'BEGIN{d=b-a; if (d<=0) d=0.01; printf "bench %s %s %.2f\n", c, s, m/d}'
}
# io DEV r|w BS START_MIB MIB: one stream.
io() {
    bs=$3; n=$(( $5 * 1048576 / bs )); at=$(( $4 * 1048576 / bs ))
    if [ "$2" = r ]; then
        dd if="$1" of=/dev/null bs="$bs" skip="$at" count="$n" iflag=direct 2>/dev/null
    else
        dd if=/tmp/pat of="$1" bs="$bs" seek="$at" count="$n" oflag=direct conv=notrunc 2>/dev/null
    fi
}
# case NAME SIDE DEV r|w BS START_MIB PAR: MB MiB from START_MIB in PAR streams.
case_() {
    name=$1 side=$2 dev=$3 rw=$4 bs=$5 start=$6 par=$7
    each=$(( MB / par )); t0=$(now); i=0
    while [ $i -lt "$par" ]; do io "$dev" "$rw" "$bs" $(( start + i * each )) "$each" & i=$((i+1)); done
    wait; t1=$(now)
    report "$name" "$side" "$t0" "$t1" "$MB"
}
snap_round() { # snap_round SIDE PREFIX ORIGIN COW
    s=$1 p=$2 O=$3 C=$4
    if [ -n "$p" ]; then so=${p}snap-origin; sn=${p}snapshot; else so=snapshot-origin; sn=snapshot; fi
    dd if=/dev/zero of="$C" bs=4096 count=1 conv=notrunc 2>/dev/null
    dmsetup create origin --table "0 262144 $so $O" || return 1
    dmsetup suspend origin
    dmsetup create snap --table "0 262144 $sn $O $C P 16" || return 1
    dmsetup resume origin
    o=/dev/mapper/origin sp=/dev/mapper/snap
    # First writes: each copies its chunks to the COW (8 KiB chunks).
    case_ cow-qd1-4k "$s" $o w 4096 0 1
    case_ cow-qd1-64k "$s" $o w 65536 $((MB)) 1
    case_ cow-par4-4k "$s" $o w 4096 $((2*MB)) 4
    case_ cow-par4-64k "$s" $o w 65536 $((3*MB)) 4
    # 0..4*MB is copied now; 4*MB..8*MB is not.
    case_ snap-read-copied "$s" $sp r 4096 0 4
    case_ snap-read-uncopied "$s" $sp r 4096 $((4*MB)) 4
    case_ snap-write-copied "$s" $sp w 4096 $((MB)) 4
    case_ origin-overwrite-copied "$s" $o w 4096 $((2*MB)) 4
    case_ origin-read "$s" $o r 4096 $((5*MB)) 4
    echo "sum $s snap $(dmsetup status snap | cut -d' ' -f4-) $(dd if=$sp bs=1M count=128 2>/dev/null | md5sum | cut -c1-32)"
    echo "sum $s origin $(dd if=$o bs=1M count=128 2>/dev/null | md5sum | cut -c1-32)"
    dmsetup remove snap; dmsetup remove origin
}
clone_round() { # clone_round SIDE PREFIX META DEST
    s=$1 p=$2 M=$3 D=$4
    dd if=/dev/zero of="$M" bs=4096 count=1 conv=notrunc 2>/dev/null
    t0=$(now)
    dmsetup create clone --table "0 131072 ${p}clone $M $D /dev/vdi 64" || return 1
    # Background hydration of the whole 64 MiB (2048 regions of 32 KiB).
    while :; do
        h=$(dmsetup status --noflush clone | cut -d" " -f7)
        [ "${h%/*}" = "${h#*/}" ] && break
        sleep 0.1
    done
    t1=$(now)
    report clone-hydrate-64m "$s" "$t0" "$t1" 64
    c=/dev/mapper/clone
    case_ clone-read-hydrated "$s" $c r 4096 0 4
    case_ clone-write-hydrated "$s" $c w 4096 $((MB)) 4
    echo "sum $s clone $(dd if=$c bs=1M count=64 2>/dev/null | md5sum | cut -c1-32)"
    dmsetup remove clone
}
side() { # side c|r
    if [ "$1" = c ]; then
        snap_round c "" /dev/vda /dev/vdb && clone_round c "" /dev/vde /dev/vdf
    else
        snap_round r r /dev/vdc /dev/vdd && clone_round r r /dev/vdg /dev/vdh
    fi
}
[ -n "${TIMING-1}" ] || ROUNDS=1
pat DATA 16777216 > /tmp/pat
pat BASE 134217728 > /dev/vda; dd if=/dev/vda of=/dev/vdc bs=1M count=128 2>/dev/null
pat SOURCE 67108864 > /dev/vdi
r=1
while [ $r -le "$ROUNDS" ]; do
    echo "round $r"
    if [ $((r % 2)) = 1 ]; then side c && side r || exit 1; else side r && side c || exit 1; fi
    # The next round starts from the same origins.
    dd if=/dev/vda of=/dev/vdc bs=1M count=128 2>/dev/null
    r=$((r+1))
done
