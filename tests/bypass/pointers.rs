//! Item 9: bad pointers get what they get without the library, and nothing crashes.

use crate::support::*;

/// The forms: `(void*)1` addresses and lengths, a read-only addrlen, NULL len.
pub(crate) const BADPTR_CASES: &[&str] = &[
    "accept-addr1",
    "accept4-addr1",
    "accept-len-ro",
    "accept4-len-ro",
    "accept-len1",
    "accept-lennull",
    "accept-addr-straddle",
    "connect-addr1",
    "connect6-addr1",
    "sendto-fastopen-addr1",
    "sendmsg-fastopen-name1",
    "sendmsg-fastopen-msg1",
    "sendmmsg-fastopen-vec1",
];

/// A sockaddr whose head is readable (family, port, address) and whose tail, still
/// inside the length passed, lies in a PROT_NONE page: the kernel copies the whole
/// length and says EFAULT; a library that reads it in user space crashes.
pub(crate) const STRADDLE_CASES: &[&str] = &[
    "connect-addr-straddle",
    "connect6-addr-straddle",
    "sendto-fastopen-addr-straddle",
    "sendmsg-fastopen-name-straddle",
];

pub(crate) fn badptr_cases(cases: &[&str], what: &str) {
    let dir = TempDir::new("bypass-badptr");
    let p = policy(&dir, "version: 1\ndefault: allow\nrules: []\n");
    let mut bad = Vec::new();
    for case in cases {
        let bare = attack_unpreloaded(&["badptr", case]);
        let want = format!("{case} error EFAULT 14");
        assert!(
            bare.status.success() && first(&bare) == want,
            "without the library, badptr {case} gave {:?} ({}): the kernel's answer changed?",
            bare.stdout,
            how(&bare)
        );
        let f = attack(&p, &["badptr", case]);
        if !f.status.success() || first(&f) != want {
            bad.push(format!(
                "{case}: under the preload {:?} ({}), without it {want:?} (exit 0)",
                f.stdout,
                how(&f)
            ));
        }
    }
    report(&bad, cases.len(), what);
}

#[test]
fn bad_pointers_get_efault_as_without_the_library_and_the_process_survives() {
    badptr_cases(BADPTR_CASES, "bad-pointer calls");
}

#[test]
fn sockaddr_straddling_an_unmapped_page_gets_efault_and_the_process_survives() {
    badptr_cases(
        STRADDLE_CASES,
        "calls with a sockaddr running into a PROT_NONE page",
    );
}
