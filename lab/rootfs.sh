# Sourced by the initramfs builders (initramfs.sh, rfl/initramfs.sh).
# rootfs_skeleton ROOT: the directories, busybox-static with a link per
# applet, and dmsetup with the shared libraries it loads.
rootfs_skeleton() {
    local root=$1 a l
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,lib/modules}
    cp /bin/busybox "$root/bin/busybox"
    for a in $("$root/bin/busybox" --list); do
        [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
    done
    install -D -m755 /usr/sbin/dmsetup "$root/usr/sbin/dmsetup"
    for l in $(ldd /usr/sbin/dmsetup | grep -o '/[^ ]*'); do
        [ -e "$root$l" ] || install -D -m755 "$(readlink -f "$l")" "$root$l"
    done
}
