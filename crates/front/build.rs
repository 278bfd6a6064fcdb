//! Link flags for the front, `libsockexit.so`.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsockexit.so");
    // Never unmapped: programs keep calling through its table.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Nothing bound lazily (the loader lock) inside a hook in a signal handler.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    // Without the C start files, whose `_init`/`_fini` and four weak references
    // (`__cxa_finalize`, `__gmon_start__`, the two `_ITM_` ones) the loader would
    // resolve in every program at every exec: our constructor is an `.init_array`
    // entry, which needs none of them (src/sys.rs defines the one symbol the std
    // build of the tests needs from them, `__dso_handle`).
    println!("cargo:rustc-cdylib-link-arg=-nostartfiles");
}
