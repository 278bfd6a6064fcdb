//! Link flags for the front, `libsockexit.so`.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsockexit.so");
    // Never unmapped: programs keep calling through its table.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Nothing bound lazily (the loader lock) inside a hook in a signal handler.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
}
