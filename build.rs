//! Link flags for libsockexit.so.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // A stable soname, so `ldd`/`LD_PRELOAD` lines and packaging name the library
    // the same way whatever the build directory.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsockexit.so");
    // Never unmapped: a program that dlopen()s and dlclose()s us (or a second copy)
    // must not be left calling hooks whose code is gone.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Resolve every symbol at load time: no lazy PLT binding (which takes the loader
    // lock) inside a hook running in a signal handler or a forked child.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
}
