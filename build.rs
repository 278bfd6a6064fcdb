//! Link flags for libsockexit.so.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // A stable soname, so `ldd`/`LD_PRELOAD` lines and packaging name the library
    // the same way whatever the build directory.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsockexit_core.so");
    // Never unmapped: a program that dlopen()s and dlclose()s us (or a second copy)
    // must not be left calling hooks whose code is gone.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Resolve every symbol at load time: no lazy PLT binding (which takes the loader
    // lock) inside a hook running in a signal handler or a forked child.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    // The library's references to its own exported functions (the hooks: `dlsym`
    // hands them out, `execv` calls `execve`) bind to themselves at link time instead
    // of through the GOT: 20 symbol lookups fewer at every program start (an exec of
    // /bin/true: 271k -> 260k instructions), and a hook always means ours, even in a
    // program that defines and exports a function of the same name.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    static_unwinder();
}

/// Link the unwinder (`libgcc_eh.a`) into the library instead of depending on
/// `libgcc_s.so.1`: every preloaded process would otherwise map one more shared object
/// and run its constructor, which executes `cpuid` a dozen times (a trap to the
/// hypervisor on a VM) — a measurable part of what each `exec` of a wrapped service
/// pays (BENCHMARKS.md, item 4). Our own panics still unwind to the `catch_unwind` in
/// every hook; C++ exceptions of the host keep using the host's libgcc_s.
///
/// Native libraries named here are placed before the standard library's `-lgcc_s` on
/// the link line, so the linker resolves `_Unwind_*` from the archive and
/// `--as-needed` drops libgcc_s. When the compiler has no `libgcc_eh.a`, the build
/// falls back to the shared unwinder (correct, one object more).
fn static_unwinder() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Ok(out) = std::process::Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if path.is_absolute() && path.is_file() {
        if let Some(dir) = path.parent() {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
        }
    }
}
