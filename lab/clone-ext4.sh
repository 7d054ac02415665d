#!/usr/bin/env bash
# clone-ext4.sh: dmtest's filesystem_test for ext4 (device-mapper-test-suite
# feature-dm-clone, lib/dmtest/tests/clone/consistency_tests.rb) on the
# stock kernel's C dm-clone: an ext4 source (ext4-source.sh: mkfs.ext4 -d
# of a tree of 300 files and a 16 MiB random test file; dmtest: a kernel
# tree and 1 GiB on 10 GiB), cloned with hydration off and mounted through
# the clone; the test file's md5 must hold when read through the clone,
# after fstrim (discards of unhydrated regions skip their hydration), and
# after hydration to the end (waited for by the event). Then the
# destination alone must be a clean ext4 (e2fsck -fn) whose files are the
# source's (debugfs dump + md5).
# Only the stock guest can run it: our Rust-enabled kernel (rfl/) is
# tinyconfig without EXT4, so dm_rs gets the same image with fstrim's
# discards issued by hand instead (rfl/clone-fs.sh).
# Exits 1 on any mismatch.
set -uo pipefail
LAB=$(cd "$(dirname "$0")" && pwd)
. "$LAB/env.sh"
W=$(mktemp -d /tmp/dmrs-ext4.XXXXXX)
t0=$(date +%s)
fail() { echo "clone-ext4: FAIL: $*"; echo "kept $W"; exit 1; }

# The source filesystem (ext4-source.sh), deterministic content.
. "$LAB/ext4-source.sh"
ext4_source "$W" || fail "ext4 source"
test_md5=$(cat "$W/test.md5")
truncate -s 96M "$W/dest.img"; truncate -s 4M "$W/meta.img"
cp "$W/src.img" "$W/src.orig"

# ext4 and its modules from the stock kernel, appended to the lab's initramfs.
mkdir -p "$W/mods/lib/modules/ext4"
modprobe -d "$CACHE/kernel" -S "$KVER" --show-depends ext4 | awk '$1=="insmod"{print $2}' | while read -r p; do
    b=$(basename "$p" .xz); xz -dc "$p" > "$W/mods/lib/modules/ext4/$b"; echo "$b" >> "$W/mods/lib/modules/ext4/list"
done
(cd "$W/mods" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1) > "$W/mods.cpio.gz"
base=$CACHE/base.cpio.gz
{ cat "$base"; head -c $(( (4 - $(stat -c %s "$base") % 4) % 4 )) /dev/zero; cat "$W/mods.cpio.gz"; } > "$W/base.cpio.gz"

cat > "$W/test.sh" <<GUEST
export DM_DISABLE_UDEV=1
for m in \$(cat /lib/modules/ext4/list); do insmod /lib/modules/ext4/\$m 2>/dev/null; done
grep -qw ext4 /proc/filesystems || { echo "no ext4"; exit 1; }
m5() { md5sum < "\$1" | cut -c1-32; }
size=\$(cat /sys/block/vda/size)
dmsetup create cl --table "0 \$size clone /dev/vdc /dev/vdb /dev/vda 8 1 no_hydration" || exit 1
mkdir -p /mnt; mount -t ext4 /dev/mapper/cl /mnt || exit 1
echo "through the clone: \$(m5 /mnt/testfile)"
echo 3 > /proc/sys/vm/drop_caches
set -- \$(dmsetup status cl); echo "hydrated before fstrim: \${7%/*}"
fstrim /mnt || exit 1
echo "after fstrim: \$(m5 /mnt/testfile)"
echo 3 > /proc/sys/vm/drop_caches
set -- \$(dmsetup status cl); echo "hydrated after fstrim: \${7%/*}"
ev=\$(dmsetup info -c --noheadings -o events cl)
dmsetup message cl 0 enable_hydration || exit 1
dmsetup wait cl \$ev >/dev/null || exit 1
echo "after hydration: \$(m5 /mnt/testfile)"
(cd /mnt && find . -type f ! -path './lost+found/*' | LC_ALL=C sort | xargs md5sum) > /tmp/t.md5
echo "tree: \$(m5 /tmp/t.md5)"
umount /mnt || exit 1
echo "status: \$(dmsetup status cl | cut -d' ' -f4-)"
dmsetup remove cl || exit 1
GUEST
LAB_BASE=$W/base.cpio.gz LAB_SMP=2 LAB_TIMEOUT=${LAB_TIMEOUT:-600} \
    "$LAB/vm.sh" "$W/test.sh" "$W/src.img" "$W/dest.img" "$W/meta.img" > "$W/console.log" 2>&1
rc=$?
out=$(sed -n '/=== LAB TEST START/,/^=== LAB TEST EXIT/p' "$W/console.log" | sed '1d;$d')
echo "$out"
[ $rc = 0 ] || { tail -20 "$W/console.log"; fail "guest rc=$rc"; }
line() { sed -n "s/^$1: //p" <<< "$out"; }
for w in "through the clone" "after fstrim" "after hydration"; do
    [ "$(line "$w")" = "$test_md5" ] || fail "testfile md5 $w: $(line "$w"), source $test_md5"
done
[ "$(line tree)" = "$(md5sum < "$W/tree.md5" | cut -c1-32)" ] || fail "the tree read through the clone differs"
b=$(line "hydrated before fstrim") a=$(line "hydrated after fstrim")
[ "$a" -gt "$b" ] || fail "fstrim marked no region hydrated ($b -> $a)"
line status | grep -qx '8 [0-9]*/1024 8 24576/24576 0 0 4 hydration_threshold 1 hydration_batch_size 1 rw' \
    || fail "status after hydration: $(line status)"
cmp -s "$W/src.img" "$W/src.orig" || fail "the source was written"
# The destination alone: a clean ext4 holding the source's files.
e2fsck -fn "$W/dest.img" > "$W/fsck.log" 2>&1 || { cat "$W/fsck.log"; fail "e2fsck on the destination"; }
mkdir "$W/dump"
debugfs -R "rdump / $W/dump" "$W/dest.img" > /dev/null 2>&1 || fail "debugfs rdump"
( cd "$W/dump" && find . -type f ! -path './lost+found/*' | LC_ALL=C sort | xargs md5sum ) > "$W/dump.md5"
cmp -s "$W/dump.md5" "$W/tree.md5" || { diff "$W/tree.md5" "$W/dump.md5" | head; fail "destination files differ"; }
echo "clone-ext4: PASS ($(( $(date +%s) - t0 ))s)"
rm -rf "$W"
