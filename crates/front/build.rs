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
    // Two segments, not four: each mapped segment is at least one more page fault in
    // every program at every exec (the kernel's cost of an object, which no instruction
    // count shows; `bench/run.sh --only sysexec` counts them). Read-only data goes with
    // the code, and no RELRO split of the writable data: the front's table of jump
    // targets is writable by design for the life of the process, so a read-only GOT
    // beside it (three imports) would protect nothing.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-rosegment");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,norelro");
}
