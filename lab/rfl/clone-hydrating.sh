#!/usr/bin/env bash
# rfl/clone-hydrating.sh: the clone status's <#hydrating regions> field
# (field 8 of `dmsetup status`, the kernel's
# atomic_read(&clone->hydrations_in_flight)) during background hydration,
# C dm-clone against dm_rs in one guest: 16 MiB, default threshold (1
# region at a time), status polled with --noflush while hydration runs.
# Both must show regions in flight at some point, and the same end line.
# (dm_rs printed a constant 0 here until the core counted them.)
# Exits 1 when the two sides differ (or the guest fails).
set -uo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$RFL")
variant=${RFL_VARIANT:-release}
W=$(mktemp -d /tmp/dmrs-chyd.XXXXXX)
. "$RFL/env.sh"
KOUT=$(rfl_prepare "$variant" "$W/base.cpio.gz") || exit 1
for d in s1 d1 s2 d2; do truncate -s 16M "$W/$d.img"; done
truncate -s 4M "$W/m1.img" "$W/m2.img"
cat > "$W/test.sh" <<'GUEST'
export DM_DISABLE_UDEV=1
run() { # run TARGET SRC DEST META
    dmsetup create cl --table "0 32768 $1 /dev/$4 /dev/$3 /dev/$2 8 1 no_hydration" || exit 1
    dmsetup message cl 0 enable_hydration
    max=0 samples=0 busy=0
    while :; do
        set -- $(dmsetup status --noflush cl)
        samples=$((samples+1)); [ "$8" -gt 0 ] && busy=$((busy+1)); [ "$8" -gt "$max" ] && max=$8
        [ -z "${mid:-}" ] && [ "${7%/*}" -ge 1024 ] && mid="$*"
        [ -z "${inflight:-}" ] && [ "$8" -gt 0 ] && inflight="$*"
        [ "${7%/*}" = "${7#*/}" ] && [ "$8" = 0 ] && break
    done
    echo "status samples with regions in flight: $([ $busy -gt 0 ] && echo some || echo none); most in flight: $max"
    echo "sample (not compared): ${mid:-}"; mid=
    echo "sample with regions in flight (not compared): ${inflight:-none}"; inflight=
    echo "end: $(dmsetup status cl | cut -d' ' -f4-)"
    dmsetup remove cl
}
yes SOURCE | head -c 16777216 > /dev/vda; yes SOURCE | head -c 16777216 > /dev/vdd
echo "== C"; run clone vda vdb vdc
echo "== dm_rs"; run rclone vdd vde vdf
GUEST
LAB_KERNEL=$KOUT/arch/x86/boot/bzImage LAB_BASE=$W/base.cpio.gz LAB_APPEND=lab.prefix=r LAB_SMP=2 \
    LAB_TIMEOUT=${LAB_TIMEOUT:-600} "$LAB/vm.sh" "$W/test.sh" "$W"/{s1,d1,m1,s2,d2,m2}.img > "$W/console.log" 2>&1
rc=$?
sed -n '/=== LAB TEST START/,/^=== LAB TEST EXIT/p' "$W/console.log" | sed '1d;$d' > "$W/out"
cat "$W/out"
ok=0
[ $rc = 0 ] || { echo "guest failed (rc=$rc)"; tail -20 "$W/console.log"; ok=1; }
if ! diff <(sed -n '/^== C/,/^== dm_rs/p' "$W/out" | sed '1d;$d' | grep -v '^sample') <(sed -n '/^== dm_rs/,$p' "$W/out" | sed '1d' | grep -v '^sample'); then
    echo "C ('<') and dm_rs ('>') differ"; ok=1
fi
[ $ok = 0 ] && rm -rf "$W"
exit $ok
