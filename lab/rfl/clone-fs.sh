#!/usr/bin/env bash
# rfl/clone-fs.sh: dmtest's ext4 filesystem_test as far as our kernel can
# go, C dm-clone and dm_rs in one guest. The rfl kernel has no EXT4, so
# nothing is mounted: the same ext4 source as clone-ext4.sh (ext4-source.sh)
# is cloned with hydration off, the test file is read through the clone at
# its extents (debugfs), fstrim's work is done by hand (blkdiscard of every
# free block range dumpe2fs lists: what FITRIM discards on this unmounted-
# fresh image, 16210 regions), the file is read again, hydration runs to
# the end (waited for by the event; threshold 128, batch 16, to keep the
# TCG guest quick) and the file is read a third time.
# Both sides must print the same, the file's md5 each time; afterwards
# each destination alone must pass e2fsck -fn and hold the source's files,
# and the two destinations must be byte-equal.
# RFL_VARIANT=debug runs it under lockdep + kmemleak. Exits 1 on a mismatch.
set -uo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$RFL")
variant=${RFL_VARIANT:-release}
W=$(mktemp -d /tmp/dmrs-cfs.XXXXXX)
t0=$(date +%s)
fail() { echo "clone-fs: FAIL: $*"; echo "kept $W"; exit 1; }
. "$RFL/env.sh"
. "$LAB/ext4-source.sh"
ext4_source "$W" || fail "ext4 source"
test_md5=$(cat "$W/test.md5")
cp "$W/src.img" "$W/src2.img"
for d in d1 d2; do truncate -s 96M "$W/$d.img"; done
truncate -s 4M "$W/m1.img" "$W/m2.img"
# Free block ranges "first count" (4 KiB blocks = regions), the test
# file's extents "first count", its size.
free=$(dumpe2fs "$W/src.img" 2>/dev/null | sed -n 's/^  Free blocks: //p' | tr ',' '\n' |
    awk 'NF { split($1, r, "-"); if (r[2] == "") r[2] = r[1]; printf "%d %d\n", r[1], r[2] - r[1] + 1 }')
extents=$(debugfs -R "stat /testfile" "$W/src.img" 2>/dev/null | sed -n '/^EXTENTS:/{n;p}' | tr ',' '\n' | grep -v ETB |
    sed -n 's/.*:[ ]*\([0-9]*\)-\([0-9]*\).*/\1 \2/p; s/.*:[ ]*\([0-9]*\)$/\1 \1/p' | awk '{ printf "%d %d\n", $1, $2 - $1 + 1 }')
fsize=$(stat -c %s "$W/tree/testfile")
[ -n "$free" ] && [ -n "$extents" ] || fail "no free ranges or extents"
KOUT=$(rfl_prepare "$variant" "$W/base.cpio.gz") || exit 1
cat > "$W/test.sh" <<GUEST
export DM_DISABLE_UDEV=1
FREE="$free"
EXTENTS="$extents"
GUEST
cat >> "$W/test.sh" <<'GUEST'
tmd5() { echo "$EXTENTS" | while read -r s n; do dd if=/dev/mapper/cl bs=4096 skip=$s count=$n iflag=direct 2>/dev/null; done |
    head -c FSIZE | md5sum | cut -c1-32; }
hyd() { set -- $(dmsetup status cl); echo "${7%/*}"; }
run() { # run TARGET SRC DEST META
    size=$(cat /sys/block/$2/size)
    dmsetup create cl --table "0 $size $1 /dev/$4 /dev/$3 /dev/$2 8 1 no_hydration" || exit 1
    echo "through the clone: $(tmd5)"
    echo "hydrated before the trim: $(hyd)"
    echo "$FREE" | while read -r s n; do blkdiscard -o $((s*4096)) -l $((n*4096)) /dev/mapper/cl || exit 1; done || exit 1
    echo "hydrated after the trim: $(hyd)"
    echo "after the trim: $(tmd5)"
    ev=$(dmsetup info -c --noheadings -o events cl)
    dmsetup message cl 0 hydration_threshold 128 && dmsetup message cl 0 hydration_batch_size 16 || exit 1
    dmsetup message cl 0 enable_hydration || exit 1
    dmsetup wait cl $ev > /dev/null || exit 1
    echo "after hydration: $(tmd5)"
    echo "status: $(dmsetup status cl | cut -d' ' -f4-)"
    dmsetup remove cl || exit 1
}
echo "== C"; run clone vda vdb vdc
echo "== dm_rs"; run rclone vdd vde vdf
GUEST
sed -i "s/FSIZE/$fsize/" "$W/test.sh"
LAB_KERNEL=$KOUT/arch/x86/boot/bzImage LAB_BASE=$W/base.cpio.gz LAB_APPEND=lab.prefix=r LAB_SMP=2 \
    LAB_TIMEOUT=${LAB_TIMEOUT:-900} "$LAB/vm.sh" "$W/test.sh" "$W"/{src,d1,m1,src2,d2,m2}.img > "$W/console.log" 2>&1
rc=$?
out=$(sed -n '/=== LAB TEST START/,/^=== LAB TEST EXIT/p' "$W/console.log" | sed '1d;$d')
echo "$out"
[ $rc = 0 ] || { tail -20 "$W/console.log"; fail "guest rc=$rc"; }
grep -E "$RFL_COMPLAINTS" "$W/console.log" && fail "the guest kernel complained"
C=$(sed -n '/^== C/,/^== dm_rs/p' <<< "$out" | sed '1d;$d')
R=$(sed -n '/^== dm_rs/,$p' <<< "$out" | sed '1d')
[ "$C" = "$R" ] || { diff <(echo "$C") <(echo "$R"); fail "C and dm_rs differ"; }
line() { sed -n "s/^$1: //p" <<< "$C"; }
for w in "through the clone" "after the trim" "after hydration"; do
    [ "$(line "$w")" = "$test_md5" ] || fail "testfile md5 $w: $(line "$w"), source $test_md5"
done
[ "$(line "hydrated before the trim")" = 0 ] && [ "$(line "hydrated after the trim")" = 16210 ] ||
    fail "hydrated regions around the trim: $(line "hydrated before the trim") -> $(line "hydrated after the trim")"
[ "$(line status)" = "8 6/1024 8 24576/24576 0 0 4 hydration_threshold 128 hydration_batch_size 16 rw" ] ||
    fail "status after hydration: $(line status)"
cmp -s "$W/d1.img" "$W/d2.img" || fail "the destinations differ (C vs dm_rs): $(cmp "$W/d1.img" "$W/d2.img" | head -1)"
for d in d1 d2; do
    e2fsck -fn "$W/$d.img" > "$W/$d.fsck" 2>&1 || { cat "$W/$d.fsck"; fail "e2fsck on $d"; }
    mkdir "$W/$d.dump"
    debugfs -R "rdump / $W/$d.dump" "$W/$d.img" > /dev/null 2>&1 || fail "debugfs rdump $d"
    ( cd "$W/$d.dump" && find . -type f ! -path './lost+found/*' | LC_ALL=C sort | xargs md5sum ) > "$W/$d.md5"
    cmp -s "$W/$d.md5" "$W/tree.md5" || fail "files on $d differ from the source's"
done
echo "clone-fs: PASS ($(( $(date +%s) - t0 ))s)"
rm -rf "$W"
