//! Shell-style glob on executable paths: `*` (any run, including `/`), `?` (one
//! byte), `[abc]`, `[a-z]`, `[!x]`. Matching allocates nothing.

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<u8>);

impl Glob {
    /// Validate a pattern (unterminated `[` is an error).
    pub fn new(p: &str) -> Result<Glob, String> {
        let b = p.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'[' {
                match class_end(b, i) {
                    Some(e) => i = e,
                    None => return Err(format!("unterminated `[` in pattern `{p}`")),
                }
            }
            i += 1;
        }
        if p.is_empty() {
            return Err("empty program pattern".into());
        }
        Ok(Glob(b.to_vec()))
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// Whether the pattern matches every path.
    pub fn is_any(&self) -> bool {
        self.0.iter().all(|&c| c == b'*')
    }

    /// Match `s` against the pattern (iterative, with star backtracking: linear-ish,
    /// never exponential).
    pub fn matches(&self, s: &[u8]) -> bool {
        let p = &self.0[..];
        let (mut pi, mut si) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() {
                match p[pi] {
                    b'*' => {
                        star = Some((pi, si));
                        pi += 1;
                        continue;
                    }
                    b'?' => {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                    b'[' => {
                        if let Some(end) = class_end(p, pi) {
                            if class_match(&p[pi + 1..end], s[si]) {
                                pi = end + 1;
                                si += 1;
                                continue;
                            }
                        }
                    }
                    c if c == s[si] => {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

fn class_end(p: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if i < p.len() && p[i] == b'!' {
        i += 1;
    }
    if i < p.len() && p[i] == b']' {
        i += 1;
    }
    while i < p.len() {
        if p[i] == b']' {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn class_match(class: &[u8], c: u8) -> bool {
    let (neg, class) = match class.first() {
        Some(b'!') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut i = 0;
    let mut hit = false;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == b'-' {
            if class[i] <= c && c <= class[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if class[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    hit != neg
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).unwrap().matches(s.as_bytes())
    }

    #[test]
    fn globs() {
        assert!(m("/usr/sbin/vsftpd", "/usr/sbin/vsftpd"));
        assert!(!m("/usr/sbin/vsftpd", "/usr/sbin/vsftpd2"));
        assert!(m("*/nginx", "/usr/sbin/nginx"));
        assert!(!m("*/nginx", "/usr/sbin/nginx-debug"));
        assert!(m("/usr/bin/python3.1?", "/usr/bin/python3.11"));
        assert!(m("/opt/[a-c]pp/*", "/opt/bpp/x/y"));
        assert!(!m("/opt/[!a-c]pp/*", "/opt/bpp/x"));
        assert!(m("*", "/anything"));
        assert!(!m(
            "a*b*c*d*e*f*g*h",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        ));
        assert!(Glob::new("/x/[ab").is_err());
    }
}
