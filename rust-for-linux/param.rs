// SPDX-License-Identifier: GPL-2.0-only
//! The `prefix` module parameter (`insmod dm_rs.ko prefix=r`): 6.12's
//! `module!` has no parameters, so this is what `module_param(prefix,
//! charp, 0444)` expands to, written out: a `struct kernel_param` in the
//! `__param` section pointing at a `char *` the loader sets before init.
//! Built into the kernel (`CONFIG_DM_RS=y`) it is `dm_rs.prefix=` on the
//! kernel command line, as `MODULE_PARAM_PREFIX` makes it in C.

use crate::bindings;
use core::ffi::CStr;
use kernel::ffi::{c_char, c_void};

/// The `char *` the parameter writes (NULL when not given).
static mut PREFIX: *mut c_char = core::ptr::null_mut();

#[repr(transparent)]
struct Param(bindings::kernel_param);

// SAFETY: read only by the module loader and by `prefix()` during init.
unsafe impl Sync for Param {}

#[cfg(MODULE)]
const NAME: &CStr = c"prefix";
#[cfg(not(MODULE))]
const NAME: &CStr = c"dm_rs.prefix";

#[link_section = "__param"]
#[used]
static PARAM: Param = Param(bindings::kernel_param {
    name: NAME.as_ptr().cast(),
    mod_: this_module!(),
    ops: core::ptr::addr_of!(bindings::param_ops_charp),
    perm: 0o444,
    level: -1,
    flags: 0,
    __bindgen_anon_1: bindings::kernel_param__bindgen_ty_1 { arg: core::ptr::addr_of_mut!(PREFIX).cast::<c_void>() },
});

/// The prefix given at load time (empty when none).
pub(crate) fn prefix() -> &'static [u8] {
    // SAFETY: set by the loader before init, never written afterwards.
    let p = unsafe { *core::ptr::addr_of!(PREFIX) };
    if p.is_null() {
        return b"";
    }
    // SAFETY: a NUL-terminated string owned by the module's parameter.
    unsafe { CStr::from_ptr(p.cast()) }.to_bytes()
}
