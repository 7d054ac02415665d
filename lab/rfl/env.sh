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
