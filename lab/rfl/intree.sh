#!/usr/bin/env bash
# rfl/intree.sh: the in-tree route of rust-for-linux/README.md, exercised.
# A shadow of Debian's kernel source (a symlink farm, refreshed cheaply)
# gets dm_rs the way a kernel developer adds a driver:
#   drivers/md/dm-rs/        the files of rust-for-linux/ (Kbuild, *.rs, dm_helper.h)
#   drivers/md/dm-rs/Kconfig the repository's Kconfig (config DM_RS)
#   drivers/md/Kconfig       + source "drivers/md/dm-rs/Kconfig" (inside if MD)
#   drivers/md/Makefile      + obj-$(CONFIG_DM_RS) += dm-rs/
# and the release configuration plus CONFIG_DM_RS=m is built with the
# kernel's own make, the core's crates passed as crates.sh prints them.
# Cached like build-kernel.sh; a second run rebuilds only what changed.
# Prints the build directory; the module is drivers/md/dm-rs/dm_rs.ko in it.
set -euo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$RFL/../.." && pwd)
. "$RFL/env.sh"
"$RFL/build-kernel.sh" release > /dev/null   # tools, sources (and the release kernel)
SRC=$KSRC
SHADOW=$RFL_CACHE/intree-src
if [ ! -e "$SHADOW/.farm" ]; then
    rm -rf "$SHADOW"
    cp -rs "$SRC" "$SHADOW"
    touch "$SHADOW/.farm"
fi
md=$SHADOW/drivers/md
mkdir -p "$md/dm-rs"
# -p keeps the times, so an unchanged file is not rebuilt.
for f in "$ROOT"/rust-for-linux/{Kbuild,dm_helper.h,*.rs} "$ROOT/Kconfig"; do
    [ "$(basename "$f")" = dm_bindings.rs ] && continue   # generated
    cmp -s "$f" "$md/dm-rs/$(basename "$f")" || cp -p "$f" "$md/dm-rs/"
done
if [ -L "$md/Kconfig" ]; then
    sed 's|^endif # MD$|source "drivers/md/dm-rs/Kconfig"\n\nendif # MD|' "$SRC/drivers/md/Kconfig" > "$md/Kconfig.new"
    grep -q 'dm-rs/Kconfig' "$md/Kconfig.new" || { echo "intree: no 'endif # MD' in drivers/md/Kconfig" >&2; exit 1; }
    rm "$md/Kconfig"; mv "$md/Kconfig.new" "$md/Kconfig"
fi
if [ -L "$md/Makefile" ]; then
    { cat "$SRC/drivers/md/Makefile"; echo 'obj-$(CONFIG_DM_RS)		+= dm-rs/'; } > "$md/Makefile.new"
    rm "$md/Makefile"; mv "$md/Makefile.new" "$md/Makefile"
fi

key=$(cat "$RFL/rfl.config" "$RFL/intree.sh" "$RFL/env.sh" | md5sum | cut -c1-12)
KOUT=$RFL_CACHE/build-intree-$key
KSRC=$SHADOW
mkdir -p "$KOUT"
start=$(date +%s)
{
    if [ ! -e "$KOUT/.config" ]; then
        kmake ARCH=x86_64 tinyconfig
        printf 'CONFIG_DM_RS=m\n' > "$KOUT/dm_rs.config"
        (cd "$KSRC" && scripts/kconfig/merge_config.sh -m -O "$KOUT" "$KOUT/.config" "$RFL/rfl.config" "$KOUT/dm_rs.config")
        kmake olddefconfig
    fi
    grep -q '^CONFIG_DM_RS=m' "$KOUT/.config" || { echo "intree: CONFIG_DM_RS not selectable" >&2; exit 1; }
    # shellcheck disable=SC2046  # one word per variable
    kmake -j"$(nproc)" $("$ROOT/rust-for-linux/crates.sh")
    kmake INSTALL_MOD_PATH="$KOUT/modroot" modules_install
} >&2
[ -f "$KOUT/drivers/md/dm-rs/dm_rs.ko" ] || { echo "intree: no dm_rs.ko" >&2; exit 1; }
echo "intree: built in $(( $(date +%s) - start ))s" >&2
echo "$KOUT"
