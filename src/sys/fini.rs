//! Unload-time destructor (`.fini_array`): runs at `exit(3)` (after `atexit`
//! handlers) and at `dlclose`, not at `_exit(2)` or on a fatal signal.

extern "C" fn sockexit_fini() {
    // Not in the library's own unit-test binary (no audit state there).
    if cfg!(test) {
        return;
    }
    // Never unwind into the dynamic loader.
    let _ = std::panic::catch_unwind(crate::audit::at_exit);
}

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = sockexit_fini;
