#!/usr/bin/env bash
# rfl/clone-restore.sh: `dmrs clone restore` against the kernel, C dm-clone
# and dm_rs in the same guests (issue 15, "Offline tools").
#  1. Guest 1: a clone (16 MiB, 4 KiB regions, no_hydration) over a source
#     of one pattern and a destination of another; whole-region writes,
#     512-byte O_DIRECT writes (the kernel copies the region from the source
#     first), whole-region discards; the clone is removed.
#  2. Host: `dmrs clone dump` (text, xml) of each kernel-written metadata
#     image; `clone restore` of each dump onto a zeroed image, whose dump
#     must equal the original's (text and xml); `clone check` passes on all.
#  3. The host rewrites the sources with a third pattern, so that every
#     hydrated region reads differently from the source. Guest 2: each side
#     opens its RESTORED metadata over the same destination: the status's
#     hydrated/total must be the dump's, every run of the dump reads the
#     destination's bytes and every gap the source's (md5s computed on the
#     host from the images); then enable_hydration to the end (event), the
#     clone and the destination hold the expected image, and the metadata
#     the kernel left passes `dmrs clone check` (all regions hydrated).
# C and dm_rs must print the same lines in both guests, and write the same
# metadata dumps and destinations.
# CLONE_RESTORE_BREAK=drop restores C's metadata from its dump with the last
# hydrated run left out (a broken restore): the script must then fail.
# RFL_VARIANT=debug runs it on the lockdep + kmemleak kernel; DMRS the tool.
# Exits 1 on any difference.
set -uo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$RFL")
ROOT=$(dirname "$LAB")
DMRS=${DMRS:-$ROOT/target/release/dmrs}
variant=${RFL_VARIANT:-release}
W=$(mktemp -d /tmp/dmrs-crst.XXXXXX)
export DMRS_STATE=$W/state
t0=$(date +%s)
ok=0
bad() { echo "clone-restore: FAIL: $*"; ok=1; }
die() { bad "$*"; echo "kept $W"; exit 1; }
[ -x "$DMRS" ] || die "no $DMRS (cargo build --release -p dmrs)"
. "$RFL/env.sh"
KOUT=$(rfl_prepare "$variant" "$W/base.cpio.gz") || exit 1

SECTORS=32768 REGIONS=4096 RB=4096   # target sectors, regions, region bytes
# Hydrated by guest 1: whole-region writes (FIRST:COUNT), partial writes
# (region: copied from the source, then 512 bytes at 1 KiB), discards.
FULL="0:1 2:3 63:3 1000:100 2047:1 4095:1"
PART="10 500 3000 1001"               # 1001: already hydrated, no copy
DISC="200:10 4000:1"
EXPECT_HYD=123                        # 109 written + 3 copied + 11 discarded
for s in s1 s2; do yes SOURCE | head -c $((SECTORS*512)) > "$W/$s.img"; done
for d in d1 d2; do yes DESTINATION | head -c $((SECTORS*512)) > "$W/$d.img"; done
truncate -s 4M "$W/m1.img" "$W/m2.img"

# guest GUEST_SCRIPT LOG DISK...: one guest; prints its test output.
guest() {
    local script=$1 log=$2; shift 2
    LAB_KERNEL=$KOUT/arch/x86/boot/bzImage LAB_BASE=$W/base.cpio.gz LAB_APPEND=lab.prefix=r LAB_SMP=2 \
        LAB_TIMEOUT=${LAB_TIMEOUT:-600} "$LAB/vm.sh" "$script" "$@" > "$log" 2>&1
    local rc=$?
    sed -n '/=== LAB TEST START/,/^=== LAB TEST EXIT/p' "$log" | sed '1d;$d'
    [ $rc = 0 ] || { tail -20 "$log" >&2; bad "guest $(basename "$script") rc=$rc"; }
    grep -E "$RFL_COMPLAINTS" "$log" >&2 && bad "the guest kernel complained ($log)"
}
# same OUT: C's section equals dm_rs's.
same() {
    diff <(sed -n '/^== C/,/^== dm_rs/p' "$1" | sed '1d;$d') <(sed -n '/^== dm_rs/,$p' "$1" | sed '1d') ||
        bad "$(basename "$1"): C ('<') and dm_rs ('>') differ"
}
common_guest() {
    cat <<'GUEST'
export DM_DISABLE_UDEV=1
RB=4096
st() { dmsetup status cl | cut -d' ' -f4-; }
sum() { dd if=$1 bs=1M iflag=direct 2>/dev/null | md5sum | cut -c1-32; }
GUEST
}

# ---- 1. guest 1: hydrate some regions, remove the clone
{ common_guest; cat <<GUEST
FULL="$FULL" PART="$PART" DISC="$DISC" SECTORS=$SECTORS
GUEST
cat <<'GUEST'
run() { # TARGET SRC DEST META
    dmsetup create cl --table "0 $SECTORS $1 /dev/$4 /dev/$3 /dev/$2 8 1 no_hydration" || exit 1
    echo "created: $(st)"
    for p in $FULL; do f=${p%:*} n=${p#*:}
        yes "WRITE $f" | head -c $((n*RB)) > /tmp/w
        dd if=/tmp/w of=/dev/mapper/cl bs=$RB seek=$f oflag=direct conv=notrunc 2>/dev/null || exit 1
    done
    echo "after whole-region writes: $(st)"
    for r in $PART; do
        yes "PATCH $r" | head -c 512 > /tmp/w
        dd if=/tmp/w of=/dev/mapper/cl bs=512 seek=$((r*8+2)) oflag=direct conv=notrunc 2>/dev/null || exit 1
    done
    echo "after partial writes: $(st)"
    for p in $DISC; do blkdiscard -o $((${p%:*}*RB)) -l $((${p#*:}*RB)) /dev/mapper/cl || exit 1; done
    echo "after discards: $(st)"
    echo "clone md5: $(sum /dev/mapper/cl)"
    dmsetup remove cl || exit 1
}
echo "== C"; run clone vda vdb vdc
echo "== dm_rs"; run rclone vdd vde vdf
GUEST
} > "$W/guest1.sh"
guest "$W/guest1.sh" "$W/console1.log" "$W"/{s1,d1,m1,s2,d2,m2}.img > "$W/out1"
sed 's/^/guest 1: /' "$W/out1"
[ $ok = 0 ] || die "guest 1"
same "$W/out1"
hyd=$(sed -n 's/^after discards: \([^ ]* \)\{3\}\([0-9]*\)\/.*/\2/p' "$W/out1" | head -1)
[ "$hyd" = $EXPECT_HYD ] || bad "guest 1: $hyd regions hydrated, expected $EXPECT_HYD"
cmp -s "$W/d1.img" "$W/d2.img" || bad "C's and dm_rs's destinations differ after guest 1"
t1=$(date +%s)

# ---- 2. host: dump, restore onto zeroed images, dump again, check
for i in 1 2; do
    m=$W/m$i.img
    "$DMRS" clone check "$m" > "$W/m$i.check" || bad "clone check of kernel-written m$i: $(cat "$W/m$i.check")"
    "$DMRS" clone dump "$m" -o "$W/m$i.txt" || bad "clone dump m$i"
    "$DMRS" clone dump --format xml "$m" -o "$W/m$i.xml" || bad "clone dump --format xml m$i"
    for fmt in txt xml; do
        in=$W/m$i.$fmt
        if [ $i = 1 ] && [ "${CLONE_RESTORE_BREAK:-}" = drop ]; then
            # The broken restore: the dump's last hydrated run is lost.
            awk '{ l[NR] = $0 } /^[0-9]|<range/ { last = NR } END { for (i = 1; i <= NR; i++) if (i != last) print l[i] }' \
                "$in" > "$W/broken.$fmt"
            in=$W/broken.$fmt
        fi
        r=$W/r$i.$fmt.img
        truncate -s 4M "$r"
        "$DMRS" clone restore -i "$in" -o "$r" --region-size 8 --target-size $SECTORS > "$W/r$i.$fmt.restore" 2>&1 ||
            bad "clone restore -i m$i.$fmt: $(cat "$W/r$i.$fmt.restore")"
        "$DMRS" clone check "$r" > "$W/r$i.$fmt.check" || bad "clone check of restored r$i.$fmt: $(cat "$W/r$i.$fmt.check")"
        "$DMRS" clone dump "$r" | cmp -s - "$W/m$i.txt" ||
            { diff "$W/m$i.txt" <("$DMRS" clone dump "$r"); bad "dump of r$i.$fmt (restored from m$i.$fmt) differs from m$i's"; }
        "$DMRS" clone dump --format xml "$r" | cmp -s - "$W/m$i.xml" ||
            bad "xml dump of r$i.$fmt differs from m$i's"
    done
done
cmp -s "$W/m1.txt" "$W/m2.txt" || { diff "$W/m1.txt" "$W/m2.txt"; bad "C's and dm_rs's metadata dumps differ"; }
echo "dump of the kernel-written metadata (C):"; sed 's/^/  /' "$W/m1.txt"
grep -q " hydrated=$EXPECT_HYD " "$W/m1.txt" || bad "m1's dump does not say hydrated=$EXPECT_HYD"

t2=$(date +%s)

# ---- 3. guest 2: open the restored metadata (C: restored from text, dm_rs:
# from xml) over new source data and the same destinations.
for s in s1 s2; do yes SOURCE-CHANGED | head -c $((SECTORS*512)) > "$W/$s.img"; done
cp "$W/r1.txt.img" "$W/g1.img"; cp "$W/r2.xml.img" "$W/g2.img"
# The dump's runs (destination) and the gaps between them (source).
RUNS=$(awk -v total=$REGIONS 'NR > 1 { if ($1 > pos) print pos, $1 - pos, "source"; print $1, $2, "destination"; pos = $1 + $2 }
    END { if (pos < total) print pos, total - pos, "source" }' "$W/m1.txt")
# What each side must read: per run, and the whole image.
for i in 1 2; do
    : > "$W/expect$i.img"
    while read -r f n from; do
        img=$W/s$i.img; [ "$from" = destination ] && img=$W/d$i.img
        dd if="$img" bs=$RB skip=$f count=$n status=none >> "$W/expect$i.img"
        if [ $i = 1 ] && [ "$from" = destination ] &&
            cmp -s <(dd if="$W/s1.img" bs=$RB skip=$f count=$n status=none) <(dd if="$img" bs=$RB skip=$f count=$n status=none); then
            bad "regions $f+$n: destination equals source, the test cannot tell them apart"
        fi
        echo "regions $f+$n ($from): $(dd if="$W/expect$i.img" bs=$RB skip=$f count=$n status=none | md5sum | cut -c1-32)"
    done <<< "$RUNS" > "$W/expect$i.runs"
done
{ common_guest; cat <<GUEST
SECTORS=$SECTORS
RUNS="$RUNS"
GUEST
cat <<'GUEST'
run() { # TARGET SRC DEST META
    src=$2 dst=$3
    dmsetup create cl --table "0 $SECTORS $1 /dev/$4 /dev/$3 /dev/$2 8 1 no_hydration" || exit 1
    echo "opened: $(st)"
    echo "$RUNS" | while read -r f n from; do
        echo "regions $f+$n ($from): $(dd if=/dev/mapper/cl bs=$RB skip=$f count=$n iflag=direct 2>/dev/null | md5sum | cut -c1-32)"
    done
    echo "clone md5: $(sum /dev/mapper/cl)"
    dmsetup message cl 0 hydration_threshold 128 && dmsetup message cl 0 hydration_batch_size 16 || exit 1
    ev=$(dmsetup info -c --noheadings -o events cl)
    dmsetup message cl 0 enable_hydration || exit 1
    while :; do
        set -- $(dmsetup status cl)
        [ "${7%/*}" = "${7#*/}" ] && [ "$8" = 0 ] && break
        dmsetup wait cl $ev > /dev/null || exit 1
        ev=$(dmsetup info -c --noheadings -o events cl)
    done
    echo "hydrated: $(st)"
    echo "clone md5 after hydration: $(sum /dev/mapper/cl)"
    dmsetup remove cl || exit 1
    echo "destination md5: $(sum /dev/$dst)"
}
echo "== C"; run clone vda vdb vdc
echo "== dm_rs"; run rclone vdd vde vdf
GUEST
} > "$W/guest2.sh"
guest "$W/guest2.sh" "$W/console2.log" "$W"/{s1,d1,g1,s2,d2,g2}.img > "$W/out2"
sed 's/^/guest 2: /' "$W/out2"
same "$W/out2"
for i in 1 2; do
    side=C; [ $i = 2 ] && side=dm_rs
    sec=$(if [ $i = 1 ]; then sed -n '/^== C/,/^== dm_rs/p' "$W/out2"; else sed -n '/^== dm_rs/,$p' "$W/out2"; fi)
    opened=$(sed -n 's/^opened: \([^ ]* \)\{3\}\([0-9]*\/[0-9]*\) .*/\2/p' <<< "$sec")
    [ "$opened" = "$EXPECT_HYD/$REGIONS" ] || bad "$side opened the restored metadata with $opened hydrated, the dump says $EXPECT_HYD/$REGIONS"
    diff "$W/expect$i.runs" <(grep '^regions ' <<< "$sec") > /dev/null ||
        { diff "$W/expect$i.runs" <(grep '^regions ' <<< "$sec"); bad "$side: what the clone read over the restored metadata ('>') is not what it must ('<')"; }
    want=$(md5sum < "$W/expect$i.img" | cut -c1-32)
    for l in "clone md5" "clone md5 after hydration" "destination md5"; do
        got=$(sed -n "s/^$l: //p" <<< "$sec")
        [ "$got" = "$want" ] || bad "$side: $l $got, expected $want"
    done
    md5sum < "$W/d$i.img" | grep -q "^$want " || bad "$side: destination image after guest 2 is not the expected image"
    "$DMRS" clone check "$W/g$i.img" > "$W/g$i.check" || bad "clone check of $side's metadata after hydration: $(cat "$W/g$i.check")"
    "$DMRS" clone dump "$W/g$i.img" > "$W/g$i.txt"
    [ "$(sed 1d "$W/g$i.txt")" = "0 $REGIONS" ] && grep -q " hydrated=$REGIONS " "$W/g$i.txt" ||
        { cat "$W/g$i.txt"; bad "$side's metadata after hydration does not say all $REGIONS regions hydrated"; }
done
echo "time: prepare + guest 1 $((t1 - t0))s, dumps and restores $((t2 - t1))s, guest 2 and checks $(( $(date +%s) - t2 ))s"
if [ $ok = 0 ]; then
    echo "clone-restore: PASS (C = dm_rs; restore -> dump = the kernel's dump; the kernel reads the restored metadata)"
    rm -rf "$W"
else
    echo "kept $W"
fi
exit $ok
