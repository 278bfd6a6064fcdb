//! Issue 19: `make install DESTDIR=tmp PREFIX=/usr` installs a working system component,
//! and the Debian package built by `make deb` holds the same files and works when
//! unpacked (`dpkg -x`).
//!
//! The install test uses this test's own build profile (`PROFILE=debug NOBUILD=1`:
//! the library and the command are already built by `common`); the package test
//! uses the release package `.ci/run` builds once with `make deb` before the tests.

mod common;

use common::daemon::{free_port, missing};
use common::peer::{assert_refused, assert_served, talk};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const SUBCOMMANDS: &[&str] = &[
    "check", "apply", "status", "set", "explain", "run", "enable", "disable", "system",
];

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `make install` of this test's build into `dest` (generated pages in `dest-gen`,
/// removed afterwards).
fn make_install(dest: &Path) {
    common::cli_path(); // builds the library, the examples and the command
    let profile = common::profile_dir();
    sh(Command::new("make")
        .current_dir(REPO)
        .arg("--no-print-directory")
        .arg("install")
        .arg(format!("DESTDIR={}", dest.display()))
        .arg("PREFIX=/usr")
        .arg(format!(
            "PROFILE={}",
            profile.file_name().unwrap().to_string_lossy()
        ))
        .arg("NOBUILD=1")
        // Its own scratch directory for the generated pages: two tests install at once.
        .arg(format!("GEN={}-gen", dest.display()))
        .arg(format!(
            "CARGO_TARGET_DIR={}",
            profile.parent().unwrap().display()
        )));
    let _ = std::fs::remove_dir_all(format!("{}-gen", dest.display()));
}

/// Every file under `root`, relative to it.
fn files(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

/// A policy that serves 127.0.0.1 and refuses 127.0.0.2 at accept.
fn policy(dir: &common::TempDir) -> PathBuf {
    dir.write(
        "policy.yaml",
        "version: 1\ndefault: allow\naudit: { log: stderr, events: deny }\nrules:\n  \
         - { name: refuse-dot-two, action: deny, calls: [accept], remote: [127.0.0.2] }\n",
    )
}

/// `ROOT/usr/bin/sockexit run --policy P -- banner_server`: 127.0.0.1 gets the banner,
/// 127.0.0.2 not one byte, and the service really runs with ROOT's library.
fn protected_service_from(root: &Path, scratch: &common::TempDir) {
    let policy = policy(scratch);
    let port = free_port();
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut child = Command::new(root.join("usr/bin/sockexit"))
        .args(["run", "--policy"])
        .arg(&policy)
        .arg("--")
        .arg(common::example_path("banner_server"))
        .arg(addr.to_string())
        .args(["--max", "1"])
        .env("SOCKEXIT_RUN_DIR", scratch.path().join("run"))
        .env_remove("LD_PRELOAD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    if !first.starts_with("listening ") {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "banner_server did not start: {first:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap();
    let lib = root.join("usr/lib/sockexit/libsockexit.so");
    // The front, and the core it loaded from beside it.
    for name in ["libsockexit.so", "libsockexit_core.so"] {
        let lib = std::fs::canonicalize(lib.with_file_name(name)).unwrap();
        assert!(
            maps.contains(&*lib.to_string_lossy()),
            "the service does not map the installed {}",
            lib.display()
        );
    }
    let refused = talk(Ipv4Addr::new(127, 0, 0, 2), addr);
    let served = talk(Ipv4Addr::LOCALHOST, addr);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_refused(&refused, "127.0.0.2 (refuse-dot-two)");
    assert_served(&served, b"220 sockexit banner\r\n", "127.0.0.1");
    assert!(out.status.success(), "banner_server: {}\n{err}", out.status);
    assert!(
        err.contains("\"rule\":\"refuse-dot-two\"") && err.contains("127.0.0.2"),
        "no audit line for the refusal:\n{err}"
    );
}

/// True when the ELF file at `p` has no DWARF left (`readelf -S`).
fn stripped(p: &Path) -> bool {
    let s = sh(Command::new("readelf").arg("-S").arg(p));
    !s.contains(".debug_info") && !s.contains(".symtab")
}

#[test]
fn make_install_gives_a_working_protected_service_man_pages_and_completions() {
    if Command::new("make").arg("--version").output().is_err() {
        return missing::<()>("make").unwrap_or(());
    }
    let dest = common::TempDir::new("install");
    let scratch = common::TempDir::new("install-scratch");
    make_install(dest.path());
    let root = dest.path();
    let have = files(root);

    let mut want: Vec<String> = vec![
        "usr/bin/sockexit".into(),
        "usr/lib/sockexit/libsockexit.so".into(),
        "usr/lib/sockexit/libsockexit_core.so".into(),
        "usr/share/man/man1/sockexit.1.gz".into(),
        "usr/share/man/man5/sockexit-policy.5.gz".into(),
        "usr/share/man/man8/libsockexit.8.gz".into(),
        "usr/share/bash-completion/completions/sockexit".into(),
        "usr/share/zsh/vendor-completions/_sockexit".into(),
        "usr/share/fish/vendor_completions.d/sockexit.fish".into(),
        "usr/lib/systemd/system/sockexit-apply.service".into(),
        "usr/share/doc/sockexit/examples/systemd/nginx.service.d/sockexit.conf".into(),
        "usr/share/doc/sockexit/examples/fail2ban/jail.conf".into(),
        "etc/sockexit/policy.yaml".into(),
        "etc/logrotate.d/sockexit".into(),
        "etc/fail2ban/action.d/sockexit.conf".into(),
    ];
    want.extend(
        SUBCOMMANDS
            .iter()
            .map(|s| format!("usr/share/man/man1/sockexit-{s}.1.gz")),
    );
    for w in &want {
        assert!(
            have.contains(w),
            "make install did not install {w}; it installed {have:#?}"
        );
    }
    assert!(
        !have.iter().any(|f| f.contains("generate")),
        "the generator shows in a page or completion: {have:#?}"
    );

    // Stripped (the release library is mostly debug info otherwise).
    for f in [
        "usr/bin/sockexit",
        "usr/lib/sockexit/libsockexit.so",
        "usr/lib/sockexit/libsockexit_core.so",
    ] {
        assert!(stripped(&root.join(f)), "{f} is not stripped");
    }

    // The shipped default policy is valid, with no warnings that matter.
    let out = Command::new(root.join("usr/bin/sockexit"))
        .arg("check")
        .arg(root.join("etc/sockexit/policy.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shipped policy: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every man page renders.
    if Command::new("man").arg("--version").output().is_ok() {
        for f in have.iter().filter(|f| f.starts_with("usr/share/man/")) {
            let out = Command::new("man")
                .arg("-l")
                .arg(root.join(f))
                .env("MANWIDTH", "80")
                .env("MAN_KEEP_FORMATTING", "")
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("NAME") && text.len() > 300,
                "man -l {f}: {}\n{text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    } else {
        missing::<()>("man (man-db)");
    }

    // The bash completion loads and completes the subcommands.
    let comp = root.join("usr/share/bash-completion/completions/sockexit");
    let words = sh(Command::new("bash").arg("-c").arg(format!(
        "source '{}' && complete -p sockexit >/dev/null && COMP_WORDS=(sockexit \"\") \
         COMP_CWORD=1 COMP_LINE='sockexit ' COMP_POINT=9 && _sockexit sockexit '' sockexit \
         && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        comp.display()
    )));
    for s in SUBCOMMANDS {
        assert!(
            words.lines().any(|l| l == *s),
            "bash completion lacks {s}: {words}"
        );
    }

    // zsh: the completion parses; fish: it loads and completes the subcommands.
    let zsh = root.join("usr/share/zsh/vendor-completions/_sockexit");
    match Command::new("zsh").arg("-n").arg(&zsh).output() {
        Ok(o) => assert!(
            o.status.success(),
            "zsh -n: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => missing::<()>("zsh").unwrap_or(()),
    }
    let fish = root.join("usr/share/fish/vendor_completions.d/sockexit.fish");
    match Command::new("fish")
        .arg("--no-config")
        .arg("-c")
        .arg(format!(
            "source '{}'; complete -C 'sockexit '",
            fish.display()
        ))
        .output()
    {
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "fish: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            for s in SUBCOMMANDS {
                assert!(
                    out.lines().any(|l| l.split('\t').next() == Some(*s)),
                    "fish completion lacks {s}: {out}"
                );
            }
        }
        Err(_) => missing::<()>("fish").unwrap_or(()),
    }

    protected_service_from(root, &scratch);

    // Alone, without its library, it says every place it looked.
    let lone = scratch.path().join("opt/bin");
    std::fs::create_dir_all(&lone).unwrap();
    std::fs::copy(root.join("usr/bin/sockexit"), lone.join("sockexit")).unwrap();
    if !Path::new("/usr/lib/sockexit/libsockexit.so").exists() {
        let out = Command::new(lone.join("sockexit"))
            .args(["run", "--policy"])
            .arg(policy(&scratch))
            .args(["--", "/bin/true"])
            .env("SOCKEXIT_RUN_DIR", scratch.path().join("run"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        let base = scratch.path().join("opt");
        for p in [
            base.join("bin/libsockexit.so"),
            base.join("lib/sockexit/libsockexit.so"),
            base.join("lib/libsockexit.so"),
            PathBuf::from("/usr/lib/sockexit/libsockexit.so"),
        ] {
            assert!(
                err.contains(&*p.to_string_lossy()),
                "not-found message lacks {}: {err}",
                p.display()
            );
        }
    }
}

/// The newest `sockexit_*.deb` under `target/debian/`.
fn built_deb() -> Option<PathBuf> {
    let dir = common::profile_dir().parent().unwrap().join("debian");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("sockexit_") && n.ends_with(".deb")
        })
        .collect();
    debs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop()
}

#[test]
fn the_deb_holds_what_make_install_installs_and_runs_a_protected_service() {
    let Some(deb) = built_deb() else {
        return missing::<()>("target/debian/sockexit_*.deb (run `make deb` first)").unwrap_or(());
    };
    // Same file list as `make install PREFIX=/usr`, plus Debian's own documents.
    let listing = sh(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let in_deb: BTreeSet<String> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches("./").to_owned())
        .collect();
    let dest = common::TempDir::new("install-for-deb");
    make_install(dest.path());
    let mut installed = files(dest.path());
    for extra in [
        "usr/share/doc/sockexit/copyright",
        "usr/share/doc/sockexit/changelog.gz",
        "usr/share/lintian/overrides/sockexit",
    ] {
        installed.insert(extra.into());
    }
    assert_eq!(in_deb, installed, "the .deb and `make install` differ");

    let tmp = common::TempDir::new("deb-ctrl");
    sh(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(tmp.path()));
    let conf = std::fs::read_to_string(tmp.path().join("conffiles")).unwrap();
    for c in [
        "/etc/sockexit/policy.yaml",
        "/etc/logrotate.d/sockexit",
        "/etc/fail2ban/action.d/sockexit.conf",
    ] {
        assert!(
            conf.lines().any(|l| l == c),
            "{c} is not a conffile: {conf}"
        );
    }

    // Unpacked into a temporary root, the packaged command and library protect a
    // service.
    let root = common::TempDir::new("deb-root");
    sh(Command::new("dpkg").arg("-x").arg(&deb).arg(root.path()));
    let scratch = common::TempDir::new("deb-scratch");
    protected_service_from(root.path(), &scratch);
}
