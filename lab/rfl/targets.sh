#!/usr/bin/env bash
# rfl/targets.sh: dm_rs.ko alone, under the kernel's own names. One guest
# without the C targets: `insmod dm_rs.ko`, then `dmsetup targets` must
# list the four targets with the kernel's versions (lvm2 gates on them), a
# snapshot table written for dm-snapshot must work unchanged, dm-snapshot.ko
# must then refuse to load (its names are taken), and `rmmod dm_rs` must be
# clean: no warning, and on the debug variant no lockdep report and no
# kmemleak object. RFL_VARIANT=release|debug. Exits 1 on any difference.
set -uo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$RFL")
variant=${RFL_VARIANT:-release}
W=$(mktemp -d /tmp/dmrs-targets.XXXXXX)
. "$RFL/env.sh"
KOUT=$(rfl_prepare "$variant" "$W/base.cpio.gz") || exit 1
truncate -s 16M "$W/origin.img"; truncate -s 8M "$W/cow.img"
cat > "$W/test.sh" <<'GUEST'
dmsetup targets | grep -E '^(snapshot|snapshot-origin|snapshot-merge|clone) ' | sort
dmsetup create base --table "0 32768 snapshot-origin /dev/vda" &&
dmsetup suspend base &&
dmsetup create snap --table "0 32768 snapshot /dev/vda /dev/vdb P 16" &&
dmsetup resume base || exit 1
dd if=/dev/zero of=/dev/mapper/base bs=64k count=1 oflag=direct 2>/dev/null
dmsetup status snap
dmsetup table snap | cut -d' ' -f1-3,6-
dmsetup remove snap; dmsetup remove base
insmod /lib/modules/dm-bufio.ko
if insmod /lib/modules/dm-snapshot.ko 2>/dev/null; then echo "dm-snapshot.ko loaded beside dm_rs"
elif dmesg | grep -q "dm_register_target: 'snapshot' target already registered"; then echo "dm-snapshot.ko refused: 'snapshot' target already registered"
else echo "dm-snapshot.ko failed otherwise"; dmesg | tail -3; fi
GUEST
LAB_KERNEL=$KOUT/arch/x86/boot/bzImage LAB_BASE=$W/base.cpio.gz LAB_APPEND=lab.noc LAB_SMP=2 \
    "$LAB/vm.sh" "$W/test.sh" "$W/origin.img" "$W/cow.img" > "$W/console.log" 2>&1
rc=$?
sed -n '/=== LAB TEST START/,/^=== LAB TEST EXIT/p' "$W/console.log" | sed '1d;$d' > "$W/out"
cat > "$W/want" <<'WANT'
clone            v1.0.0
snapshot         v1.16.0
snapshot-merge   v1.5.0
snapshot-origin  v1.9.0
0 32768 snapshot 160/16384 32
0 32768 snapshot P 16
dm-snapshot.ko refused: 'snapshot' target already registered
WANT
ok=0
[ $rc = 0 ] || { echo "guest failed (rc=$rc)"; tail -20 "$W/console.log"; ok=1; }
diff "$W/want" "$W/out" || { echo "dm_rs under the kernel's names: unexpected output (< wanted, > got)"; ok=1; }
if grep -E "$RFL_COMPLAINTS" "$W/console.log"; then
    echo "the guest kernel complained"; ok=1
fi
grep -h 'kmemleak: unreferenced' "$W/console.log"
[ $ok = 0 ] && { cat "$W/out"; echo "dm_rs targets: OK ($variant)"; rm -rf "$W"; }
exit $ok
