//! What the front and the core agree on: the hooked symbols, in table order. Included
//! by both (`crates/front/src/lib.rs` and the core's `src/sys/front.rs`).

/// Call `$m!` with every hooked symbol, in table order.
macro_rules! for_each_hook {
    ($m:ident) => {
        $m! {
            accept accept4 connect __connect listen sendto sendmsg sendmmsg
            dlsym dlvsym dlopen dlmopen
            execve execv execvp execvpe execveat fexecve execl execle execlp
            posix_spawn posix_spawnp
            rcmd rcmd_af rexec rexec_af
            chroot unshare setns prctl
        }
    };
}
pub(crate) use for_each_hook;

/// The number of hooked symbols.
pub const HOOKS: usize = 31;

/// The version of this agreement: the core refuses a front of another.
pub const ABI: usize = 2;
