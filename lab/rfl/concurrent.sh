#!/usr/bin/env bash
# rfl/concurrent.sh: concurrent writers on origin and snapshot, C targets
# and dm_rs side by side in one 2-CPU guest (guest-concurrent.sh).
# RFL_VARIANT=debug runs it under lockdep + kmemleak. (Throughput: bench.sh.)
# Exits 1 when the results differ or the kernel complains.
set -uo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$RFL"); ROOT=$(dirname "$LAB")
variant=${RFL_VARIANT:-release}
W=$(mktemp -d /tmp/dmrs-conc.XXXXXX)
. "$RFL/env.sh"
KOUT=$(rfl_prepare "$variant" "$W/base.cpio.gz") || exit 1
for d in o1 c1 o2 c2; do truncate -s 64M "$W/$d.img"; done
cp "$RFL/guest-concurrent.sh" "$W/test.sh"
LAB_KERNEL=$KOUT/arch/x86/boot/bzImage LAB_BASE=$W/base.cpio.gz LAB_APPEND=lab.prefix=r LAB_SMP=2 \
    LAB_TIMEOUT=${LAB_TIMEOUT:-1200} "$LAB/vm.sh" "$W/test.sh" "$W/o1.img" "$W/c1.img" "$W/o2.img" "$W/c2.img" > "$W/console.log" 2>&1
rc=$?
sed -n '/=== LAB TEST START/,/^=== LAB TEST EXIT/p' "$W/console.log" | sed '1d;$d' > "$W/out"
cat "$W/out"
ok=0
[ $rc = 0 ] || { echo "guest failed (rc=$rc)"; tail -20 "$W/console.log"; ok=1; }
if ! diff <(sed -n '/^== C/,/^== dm_rs/p' "$W/out" | sed '1d;$d') <(sed -n '/^== dm_rs/,$p' "$W/out" | sed '1d'); then
    echo "C and dm_rs differ"; ok=1
fi
if grep -E "$RFL_COMPLAINTS" "$W/console.log"; then
    echo "the guest kernel complained"; ok=1
fi
"$ROOT/target/release/dmrs" cow check "$W/c2.img" || ok=1
[ $ok = 0 ] && rm -rf "$W"
exit $ok
