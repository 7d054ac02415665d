# Sourced by the rfl scripts: our Rust-enabled kernel's sources, tools, cache.
. "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
RFL_CACHE=$CACHE/rfl
KSRC=${KSRC:-$RFL_CACHE/linux-source-6.12}
BINDGEN_BIN=${BINDGEN_BIN:-/opt/bindgen/bin/bindgen}
# Every rustc must be Debian's rustc-web 1.96 (the kernel's rust/*.rmeta are
# built by it; rustup's toolchain has no library sources and mixing gives E0514).
KMAKE_VARS=(RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
            BINDGEN="$BINDGEN_BIN" RUST_LIB_SRC=/usr/src/rustc-1.96.0/library)
kmake() { make -C "$KSRC" O="$KOUT" "${KMAKE_VARS[@]}" "$@"; }

# What in a guest's console means the kernel (or dm_rs's loading) went
# wrong; lockdep's reports start with "WARNING:". One list for every runner.
RFL_COMPLAINTS='WARNING|BUG|circular locking|recursive locking|inconsistent lock state|suspicious RCU|blocked for more than|kmemleak: unreferenced objects: [1-9]|rmmod dm_rs failed|insmod dm_rs.ko failed|Call Trace'

# rfl_prepare VARIANT INITRAMFS: the kernel of VARIANT (release, debug, or
# intree: dm_rs built in the kernel's tree), dm_rs.ko for it, and the
# guest initramfs written to INITRAMFS. Prints the kernel's build directory.
rfl_prepare() {
    local rfl root kout ko
    rfl=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    root=$(dirname "$(dirname "$rfl")")
    if [ "$1" = intree ]; then
        kout=$("$rfl/intree.sh" | tail -1) || { echo "rfl: in-tree build failed" >&2; return 1; }
        ko=$kout/drivers/md/dm-rs/dm_rs.ko
    else
        kout=$("$rfl/build-kernel.sh" "$1" | tail -1) || { echo "rfl: kernel build failed" >&2; return 1; }
        make -s -C "$root/rust-for-linux" KDIR="$kout" >&2 || { echo "rfl: dm_rs.ko build failed" >&2; return 1; }
        ko=$root/rust-for-linux/dm_rs.ko
    fi
    "$rfl/initramfs.sh" "$kout" "$ko" "$2" >&2 || return 1
    echo "$kout"
}
