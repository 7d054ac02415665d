#!/usr/bin/env bash
# rfl/clone-users.sh: dm-clone as its users drive it, C targets and dm_rs
# side by side in one 2-CPU guest (guest-clone-users.sh): systemd-
# clonesetup's sequence with a deferred remove while the device is open,
# and dmtest's commit_on_flush on the metadata disk's write counter and
# superblock. The C and dm_rs sections of the output must be equal and
# show the expected behaviour. RFL_VARIANT=debug runs it under lockdep +
# kmemleak. Exits 1 when they differ, an expectation fails or the kernel
# complains.
set -uo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$RFL")
variant=${RFL_VARIANT:-release}
W=$(mktemp -d /tmp/dmrs-cusers.XXXXXX)
. "$RFL/env.sh"
KOUT=$(rfl_prepare "$variant" "$W/base.cpio.gz") || exit 1
for d in s1 d1 m1 s2 d2 m2; do truncate -s 8M "$W/$d.img"; done
truncate -s 4M "$W/m1.img" "$W/m2.img"
cp "$RFL/guest-clone-users.sh" "$W/test.sh"
t0=$(date +%s)
LAB_KERNEL=$KOUT/arch/x86/boot/bzImage LAB_BASE=$W/base.cpio.gz LAB_APPEND=lab.prefix=r LAB_SMP=2 \
    LAB_TIMEOUT=${LAB_TIMEOUT:-900} "$LAB/vm.sh" "$W/test.sh" "$W"/{s1,d1,m1,s2,d2,m2}.img > "$W/console.log" 2>&1
rc=$?
sed -n '/=== LAB TEST START/,/^=== LAB TEST EXIT/p' "$W/console.log" | sed '1d;$d' > "$W/out"
cat "$W/out"
ok=0
[ $rc = 0 ] || { echo "guest failed (rc=$rc)"; tail -20 "$W/console.log"; ok=1; }
C=$(sed -n '/^== C/,/^== dm_rs/p' "$W/out" | sed '1d;$d')
R=$(sed -n '/^== dm_rs/,$p' "$W/out" | sed '1d')
if [ "$C" != "$R" ]; then
    echo "C and dm_rs differ:"; diff <(echo "$C") <(echo "$R"); ok=1
fi
# What each side must show (8 MiB: 2048 regions of 4 KiB).
expect() { # expect SIDE LINE
    grep -qxF -- "$2" <<< "$1" || { echo "missing in the $3 output: $2"; ok=1; }
}
for side in C R; do
    out=${!side}
    expect "$out" "after the event: 8 6/1024 8 2048/2048 0 0 4 hydration_threshold 1 hydration_batch_size 1 rw" $side
    for l in "clone reads the source" "destination holds the source" "remove while open: refused" \
        "deferred: ACTIVE (DEFERRED REMOVE)" "open count: 1" "held-open fd reads the clone" \
        "after close: 0 devices named cl" \
        "hydrate region 0 by a write + flush: metadata written yes, superblock rewritten" \
        "hydrate region 0 by a discard + flush: metadata written yes, superblock rewritten" \
        "write hydrated region 0 + flush: metadata written no, superblock unchanged" \
        "flush alone: metadata written no, superblock unchanged" \
        "all hydrated: write region 100 + flush: metadata written no, superblock unchanged" \
        "all hydrated: discard region 200 + flush: metadata written no, superblock unchanged" \
        "all hydrated: flush alone: metadata written no, superblock unchanged"; do
        expect "$out" "$l" $side
    done
done
if grep -E "$RFL_COMPLAINTS" "$W/console.log"; then
    echo "the guest kernel complained"; ok=1
fi
echo "clone-users: $([ $ok = 0 ] && echo PASS || echo FAIL) ($(( $(date +%s) - t0 ))s); console in $W/console.log"
[ $ok = 0 ] && rm -rf "$W"
exit $ok
