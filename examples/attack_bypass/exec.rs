//! `exec`: an exec with an environment the program builds.

use crate::support::*;

pub(crate) fn cmd_exec(args: &[String]) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let (Some(form), Some(envmode)) = (args.first(), args.get(1)) else {
        usage()
    };
    let sub = &args[2..];
    if sub.is_empty() {
        usage();
    }
    let exe =
        std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| die("readlink /proc/self/exe"));
    let exe_c = CString::new(exe.as_os_str().as_bytes()).expect("no NUL");
    let mut argv_c: Vec<CString> = vec![exe_c.clone()];
    argv_c.extend(
        sub.iter()
            .map(|a| CString::new(a.as_bytes()).expect("no NUL")),
    );
    let mut env_c: Vec<CString> = Vec::new();
    match envmode.as_str() {
        "empty" => {}
        "no-preload" => {
            for (k, v) in std::env::vars_os() {
                if k != "LD_PRELOAD" {
                    let mut kv = k.as_bytes().to_vec();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_bytes());
                    env_c.push(CString::new(kv).expect("no NUL"));
                }
            }
        }
        m if m.starts_with("policy=") => {
            for (k, v) in std::env::vars_os() {
                if k != "SOCKEXIT_POLICY" {
                    let mut kv = k.as_bytes().to_vec();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_bytes());
                    env_c.push(CString::new(kv).expect("no NUL"));
                }
            }
            env_c.push(
                CString::new(format!("SOCKEXIT_POLICY={}", &m["policy=".len()..])).expect("no NUL"),
            );
        }
        _ => usage(),
    }
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(ptr::null());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: argv/envp are NULL-terminated arrays of live C strings; on success the
    // exec forms do not return.
    unsafe {
        match form.as_str() {
            "execve" => {
                libc::execve(exe_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
            }
            "execvpe" => {
                libc::execvpe(exe_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
            }
            "execle" => {
                // execle is variadic: pass the argument list, a NULL, then envp. Up to
                // six subcommand arguments.
                let a = |i: usize| argv.get(i).copied().unwrap_or(ptr::null());
                if argv.len() > 8 {
                    usage();
                }
                libc::execle(
                    exe_c.as_ptr(),
                    a(0),
                    a(1),
                    a(2),
                    a(3),
                    a(4),
                    a(5),
                    a(6),
                    a(7),
                    ptr::null::<libc::c_char>(),
                    envp.as_ptr(),
                );
            }
            "fexecve" => {
                let fd = libc::open(exe_c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    die("open self");
                }
                libc::fexecve(fd, argv.as_ptr(), envp.as_ptr());
            }
            "execveat" => {
                // glibc's wrapper (2.34+), not the raw syscall (which no preload sees).
                execveat(
                    libc::AT_FDCWD,
                    exe_c.as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    0,
                );
            }
            "vfork" => {
                // vfork + execve with the rebuilt environment: the hook runs in the
                // child, which shares our memory until the exec.
                // libc marks vfork deprecated for Rust callers because the child shares
                // the parent's stack; this child only calls execve and _exit, the
                // pattern vfork exists for (and the one the hook must survive).
                #[allow(deprecated)]
                let pid = libc::vfork();
                if pid == 0 {
                    libc::execve(exe_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
                    libc::_exit(127);
                }
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
                exit(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    1
                });
            }
            "execv-environ" => {
                // The forms that use the process's own environment, after the program
                // rebuilt it (clearenv + its own entries).
                libc::clearenv();
                for e in envp.iter().take_while(|e| !e.is_null()) {
                    libc::putenv(*e as *mut libc::c_char);
                }
                libc::execv(exe_c.as_ptr(), argv.as_ptr());
            }
            "posix_spawn" => {
                let mut pid: libc::pid_t = 0;
                let r = libc::posix_spawn(
                    &mut pid,
                    exe_c.as_ptr(),
                    ptr::null(),
                    ptr::null(),
                    argv.as_ptr() as *const *mut libc::c_char,
                    envp.as_ptr() as *const *mut libc::c_char,
                );
                if r != 0 {
                    println!("error {} {r}", ename(r));
                    exit(1);
                }
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
                exit(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    1
                });
            }
            _ => usage(),
        }
    }
    die(form);
}
