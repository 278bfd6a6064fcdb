//! Issue 15, part 3: when the library can see that calls will escape it, it says so
//! once per process at warn level, naming the program — a plugin `dlopen`ed with
//! `RTLD_DEEPBIND`, `dlmopen` into a new namespace, an exec of a static binary — and
//! says nothing for the ordinary cases.

mod common;

use common::daemon::{missing, require};
use common::{preloaded, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "deepbind")) {
        for (int i = 0; i < 2; i++) dlopen("libm.so.6", RTLD_NOW | RTLD_DEEPBIND);
    } else if (!strcmp(m, "dlmopen")) {
        dlmopen(LM_ID_NEWLM, "libm.so.6", RTLD_NOW);
    } else if (!strcmp(m, "plain")) {
        dlopen("libm.so.6", RTLD_NOW);
        char *a[] = {"true", NULL};
        execv("/bin/true", a);
    } else if (!strcmp(m, "static")) {
        char *a[] = {argv[2], NULL};
        execv(argv[2], a);
    }
    printf("done\n");
    return 0;
}
"#;

fn build(dir: &TempDir, name: &str, src: &str, extra: &[&str]) -> Option<PathBuf> {
    let gcc = require("gcc")?;
    let c = dir.write(&format!("{name}.c"), src);
    let out = dir.path().join(name);
    let o = Command::new(gcc)
        .arg("-o")
        .arg(&out)
        .arg(&c)
        .args(extra)
        .output()
        .unwrap();
    if !o.status.success() {
        return missing(&format!(
            "gcc {} ({})",
            extra.join(" "),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Some(out)
}

fn run(prog: &Path, policy: &Path, args: &[&str]) -> String {
    let o = preloaded(prog, policy)
        .args(args)
        .env("SOCKEXIT_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn escaping_calls_are_said_once_naming_the_program_and_ordinary_ones_are_not() {
    let dir = TempDir::new("coverage-lost");
    let Some(prog) = build(&dir, "escape", PROGRAM, &["-ldl"]) else {
        return;
    };
    let Some(stat) = build(
        &dir,
        "static_true",
        "int main(void){return 0;}\n",
        &["-static"],
    ) else {
        return;
    };
    let policy = dir.write(
        "p.yaml",
        "version: 1\ndefault: allow\nrules: []\naudit: { log: off }\n",
    );
    let name = prog.display().to_string();

    let e = run(&prog, &policy, &["deepbind"]);
    assert_eq!(
        e.matches("RTLD_DEEPBIND").count(),
        1,
        "once per process: {e}"
    );
    assert!(
        e.contains(&format!(
            "coverage lost in {name}: libm.so.6 was loaded with RTLD_DEEPBIND"
        )),
        "{e}"
    );

    let e = run(&prog, &policy, &["dlmopen"]);
    assert!(e.contains("dlmopen into a new namespace"), "{e}");

    let e = run(&prog, &policy, &["static", stat.to_str().unwrap()]);
    assert!(
        e.contains(&format!(
            "coverage lost in {name}: {} is statically linked",
            stat.display()
        )),
        "{e}"
    );

    let e = run(&prog, &policy, &["plain"]);
    assert!(
        !e.contains("coverage lost"),
        "an ordinary dlopen and exec: {e}"
    );
}
