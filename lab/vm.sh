#!/usr/bin/env bash
# vm.sh SCRIPT DISK...: boots the stock kernel under qemu (TCG; KVM does not
# work on these machines) with SCRIPT as /test.sh and the disks as
# virtio-blk vda, vdb, ... (raw, writeback: the files hold what the kernel
# wrote once it powers off). Prints the console; exits with the script's
# status, or 200 when the guest never reported one (crash, timeout).
set -euo pipefail
LAB=$(cd "$(dirname "$0")" && pwd)
. "$LAB/env.sh"
script=$1; shift
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir "$w/r"
cp "$script" "$w/r/test.sh"
(cd "$w/r" && echo test.sh | cpio -o -H newc --quiet -R 0:0) > "$w/test.cpio"
# LAB_KERNEL/LAB_BASE: another kernel and its initramfs (lab/rfl/ uses our
# Rust-enabled build); LAB_SMP CPUs; LAB_APPEND more command-line words.
# The appended cpio must start 4-byte aligned (the kernel's unpacker skips
# zero padding only between aligned archives), so pad the base first.
base=${LAB_BASE:-$CACHE/base.cpio.gz}
{ cat "$base"; head -c $(( (4 - $(stat -c %s "$base") % 4) % 4 )) /dev/zero; cat "$w/test.cpio"; } > "$w/initrd"
args=()
for d in "$@"; do args+=(-drive "file=$d,format=raw,if=virtio,cache=writeback,discard=unmap"); done
set +e
timeout "${LAB_TIMEOUT:-300}" qemu-system-x86_64 -accel tcg -m ${LAB_MEM:-512} -smp "${LAB_SMP:-1}" -cpu max \
    -nographic -no-reboot -nodefaults -serial stdio -monitor none \
    -kernel "${LAB_KERNEL:-$KERNEL}" -initrd "$w/initrd" \
    -append "console=ttyS0 panic=-1 quiet loglevel=1 mitigations=off lab.ndisks=$# ${LAB_APPEND:-}" \
    "${args[@]}" </dev/null | tr -d '\r' | tee "$w/console.log"
set -e
rc=$(sed -n 's/^=== LAB TEST EXIT rc=\([0-9]*\).*/\1/p' "$w/console.log" | tail -1)
exit "${rc:-200}"
