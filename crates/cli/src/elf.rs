//! Just enough ELF to tell whether `LD_PRELOAD` can reach a program: its class and
//! machine, whether it names a dynamic loader (`PT_INTERP`), and whether it is a Go
//! program (a `Go` note, or a `.go.buildinfo` / `.note.go.buildid` section).
//!
//! Safe code only, every read bounded and checked: the file is whatever the user
//! names, and a crafted one must give an error, never a panic or a huge allocation.

use std::io;
use std::os::unix::fs::FileExt;

/// What `parse` learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    /// 32 or 64.
    pub bits: u8,
    /// `e_machine` (62 = x86-64, 3 = i386, 183 = AArch64).
    pub machine: u16,
    /// The dynamic loader named by `PT_INTERP`, without its NUL; `None` = static.
    pub interp: Option<Vec<u8>>,
    /// A Go program: Go makes its socket calls as raw system calls.
    pub go: bool,
}

#[derive(Debug)]
pub enum Error {
    /// Not an ELF file at all (no `\x7fELF`).
    NotElf,
    /// An ELF file this module cannot read (truncated, inconsistent, unknown class).
    Bad(String),
    Io(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotElf => f.write_str("not an ELF file"),
            Error::Bad(s) => write!(f, "malformed ELF file: {s}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Bytes that can be read at an offset: a file, or a byte array in the tests.
pub trait Source {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl Source for [u8] {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let eof = || io::Error::from(io::ErrorKind::UnexpectedEof);
        let start = usize::try_from(off).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        buf.copy_from_slice(self.get(start..end).ok_or_else(eof)?);
        Ok(())
    }
}

impl Source for std::fs::File {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact_at(buf, off)
    }
}

const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;
/// `e_phnum` value meaning "the real count is in section 0's `sh_info`".
const PN_XNUM: u16 = 0xffff;
const SHN_XINDEX: u16 = 0xffff;
/// Bounds on what is read for any one table or segment.
const MAX_TABLE: u64 = 4 << 20;
const MAX_NOTES: u64 = 1 << 20;
const MAX_INTERP: u64 = 4096;

/// The file's layout: class and byte order.
#[derive(Clone, Copy)]
struct Fmt {
    is64: bool,
    le: bool,
}

impl Fmt {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let a = [b[at], b[at + 1]];
        if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }
    fn u32(self, b: &[u8], at: usize) -> u32 {
        let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }
    fn u64(self, b: &[u8], at: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        if self.le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }
}

/// `len` bytes at `off`, refusing more than `max`.
fn read<S: Source + ?Sized>(
    s: &S,
    off: u64,
    len: u64,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, Error> {
    if len > max {
        return Err(Error::Bad(format!("{what} is {len} bytes (limit {max})")));
    }
    let mut v = vec![0u8; len as usize];
    s.read_at(off, &mut v).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::Bad(format!("{what} lies past the end of the file")),
        _ => Error::Io(e),
    })?;
    Ok(v)
}

/// One section header: name offset, type, offset, size, link, info.
struct Shdr {
    name: u32,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
}

fn shdr(f: Fmt, b: &[u8]) -> Shdr {
    if f.is64 {
        Shdr {
            name: f.u32(b, 0),
            kind: f.u32(b, 4),
            offset: f.u64(b, 24),
            size: f.u64(b, 32),
            link: f.u32(b, 40),
            info: f.u32(b, 44),
        }
    } else {
        Shdr {
            name: f.u32(b, 0),
            kind: f.u32(b, 4),
            offset: u64::from(f.u32(b, 16)),
            size: u64::from(f.u32(b, 20)),
            link: f.u32(b, 24),
            info: f.u32(b, 28),
        }
    }
}

/// Whether a note area (`SHT_NOTE` section or `PT_NOTE` segment) has a note named
/// `Go`. Notes are padded to `align` (4, or 8 for some ELF64 notes).
fn has_go_note(f: Fmt, b: &[u8], align: u64) -> bool {
    let align = if align == 8 { 8 } else { 4 };
    let pad = |n: usize| n.div_ceil(align) * align;
    let mut at = 0usize;
    while at + 12 <= b.len() {
        let namesz = f.u32(b, at) as usize;
        let descsz = f.u32(b, at + 4) as usize;
        let name_at = at + 12;
        let Some(name) = b.get(name_at..name_at.saturating_add(namesz)) else {
            return false;
        };
        if name == b"Go\0" || name == b"Go" {
            return true;
        }
        let Some(next) = name_at
            .checked_add(pad(namesz))
            .and_then(|n| n.checked_add(pad(descsz)))
        else {
            return false;
        };
        at = next;
    }
    false
}

/// Reads the ELF headers of `s`.
pub fn parse<S: Source + ?Sized>(s: &S) -> Result<Elf, Error> {
    let mut ident = [0u8; 16];
    match s.read_at(0, &mut ident) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(Error::NotElf),
        Err(e) => return Err(Error::Io(e)),
    }
    if &ident[..4] != b"\x7fELF" {
        return Err(Error::NotElf);
    }
    let is64 = match ident[4] {
        1 => false,
        2 => true,
        c => return Err(Error::Bad(format!("unknown class {c}"))),
    };
    let le = match ident[5] {
        1 => true,
        2 => false,
        d => return Err(Error::Bad(format!("unknown byte order {d}"))),
    };
    let f = Fmt { is64, le };
    let eh = read(s, 0, if is64 { 64 } else { 52 }, 64, "ELF header")?;
    let machine = f.u16(&eh, 18);
    let (phoff, shoff, rest) = if is64 {
        (f.u64(&eh, 32), f.u64(&eh, 40), 52)
    } else {
        (u64::from(f.u32(&eh, 28)), u64::from(f.u32(&eh, 32)), 40)
    };
    let phentsize = u64::from(f.u16(&eh, rest + 2));
    let mut phnum = u64::from(f.u16(&eh, rest + 4));
    let shentsize = u64::from(f.u16(&eh, rest + 6));
    let mut shnum = u64::from(f.u16(&eh, rest + 8));
    let mut shstrndx = u64::from(f.u16(&eh, rest + 10));
    let (min_ph, min_sh) = if is64 { (56, 64) } else { (32, 40) };

    // Section 0 holds the real counts when they do not fit in the header.
    let want_sh0 = shoff != 0
        && (shnum == 0 || phnum == u64::from(PN_XNUM) || shstrndx == u64::from(SHN_XINDEX));
    if want_sh0 {
        if shentsize < min_sh {
            return Err(Error::Bad(format!("section header size {shentsize}")));
        }
        let b = read(s, shoff, shentsize, MAX_TABLE, "section header 0")?;
        let sh0 = shdr(f, &b);
        if shnum == 0 {
            shnum = sh0.size;
        }
        if phnum == u64::from(PN_XNUM) {
            phnum = u64::from(sh0.info);
        }
        if shstrndx == u64::from(SHN_XINDEX) {
            shstrndx = u64::from(sh0.link);
        }
    }

    let mut interp = None;
    let mut go = false;
    if phnum > 0 {
        if phentsize < min_ph {
            return Err(Error::Bad(format!("program header size {phentsize}")));
        }
        let table = read(
            s,
            phoff,
            phnum.saturating_mul(phentsize),
            MAX_TABLE,
            "program header table",
        )?;
        for ph in table.chunks_exact(phentsize as usize) {
            let kind = f.u32(ph, 0);
            let (offset, filesz, align) = if is64 {
                (f.u64(ph, 8), f.u64(ph, 32), f.u64(ph, 48))
            } else {
                (
                    u64::from(f.u32(ph, 4)),
                    u64::from(f.u32(ph, 16)),
                    u64::from(f.u32(ph, 28)),
                )
            };
            match kind {
                PT_INTERP => {
                    let mut p = read(s, offset, filesz, MAX_INTERP, "PT_INTERP")?;
                    if let Some(nul) = p.iter().position(|b| *b == 0) {
                        p.truncate(nul);
                    }
                    interp = Some(p);
                }
                PT_NOTE if !go => {
                    let b = read(s, offset, filesz, MAX_NOTES, "PT_NOTE segment")?;
                    go = has_go_note(f, &b, align);
                }
                _ => {}
            }
        }
    }

    // Sections: a stripped Go binary keeps them; a program without any is fine.
    if !go && shnum > 0 && shoff != 0 {
        if shentsize < min_sh {
            return Err(Error::Bad(format!("section header size {shentsize}")));
        }
        let table = read(
            s,
            shoff,
            shnum.saturating_mul(shentsize),
            MAX_TABLE,
            "section header table",
        )?;
        let shdrs: Vec<Shdr> = table
            .chunks_exact(shentsize as usize)
            .map(|b| shdr(f, b))
            .collect();
        let names = match shdrs.get(shstrndx as usize) {
            Some(st) if shstrndx != 0 => {
                read(s, st.offset, st.size, MAX_TABLE, "section name table")?
            }
            _ => Vec::new(),
        };
        let name_of = |sh: &Shdr| -> &[u8] {
            let start = sh.name as usize;
            let tail = names.get(start..).unwrap_or_default();
            &tail[..tail.iter().position(|b| *b == 0).unwrap_or(tail.len())]
        };
        for sh in &shdrs {
            let name = name_of(sh);
            if name == b".go.buildinfo" || name == b".note.go.buildid" {
                go = true;
                break;
            }
            if sh.kind == SHT_NOTE {
                let b = read(s, sh.offset, sh.size, MAX_NOTES, "note section")?;
                if has_go_note(f, &b, 4) {
                    go = true;
                    break;
                }
            }
        }
    }

    Ok(Elf {
        bits: if is64 { 64 } else { 32 },
        machine,
        interp,
        go,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crafted ELF file, built field by field (little-endian unless `be`).
    struct Builder {
        is64: bool,
        be: bool,
        phdrs: Vec<(u32, Vec<u8>)>,
        sections: Vec<(&'static str, u32, Vec<u8>)>,
    }

    impl Builder {
        fn new(is64: bool) -> Builder {
            Builder {
                is64,
                be: false,
                phdrs: Vec::new(),
                sections: Vec::new(),
            }
        }
        fn big_endian(mut self) -> Self {
            self.be = true;
            self
        }
        fn ph(mut self, kind: u32, data: &[u8]) -> Self {
            self.phdrs.push((kind, data.to_vec()));
            self
        }
        fn section(mut self, name: &'static str, kind: u32, data: &[u8]) -> Self {
            self.sections.push((name, kind, data.to_vec()));
            self
        }
        fn build(self) -> Vec<u8> {
            let (ehsize, phsize, shsize) = if self.is64 {
                (64, 56, 64)
            } else {
                (52, 32, 40)
            };
            let mut out = vec![0u8; ehsize];
            out[..4].copy_from_slice(b"\x7fELF");
            out[4] = if self.is64 { 2 } else { 1 };
            out[5] = if self.be { 2 } else { 1 };
            out[6] = 1;
            let be = self.be;
            let put16 = |o: &mut Vec<u8>, at: usize, v: u16| {
                o[at..at + 2].copy_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
            };
            let put32 = |o: &mut Vec<u8>, at: usize, v: u32| {
                o[at..at + 4].copy_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
            };
            let put64 = |o: &mut Vec<u8>, at: usize, v: u64| {
                o[at..at + 8].copy_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
            };
            let is64 = self.is64;
            let putw = move |o: &mut Vec<u8>, at: usize, v: u64| {
                if is64 {
                    put64(o, at, v)
                } else {
                    put32(o, at, v as u32)
                }
            };
            put16(&mut out, 16, 2);
            put16(&mut out, 18, if is64 { 62 } else { 3 });
            // Segment and section contents first, then the tables.
            let mut ph_data = Vec::new();
            for (_, d) in &self.phdrs {
                ph_data.push((out.len() as u64, d.len() as u64));
                out.extend_from_slice(d);
            }
            let mut strtab = vec![0u8];
            let mut sh_data = Vec::new();
            for (name, _, d) in &self.sections {
                let n = strtab.len() as u32;
                strtab.extend_from_slice(name.as_bytes());
                strtab.push(0);
                sh_data.push((n, out.len() as u64, d.len() as u64));
                out.extend_from_slice(d);
            }
            let shstr_name = strtab.len() as u32;
            strtab.extend_from_slice(b".shstrtab\0");
            let strtab_at = out.len() as u64;
            out.extend_from_slice(&strtab);
            let phoff = out.len() as u64;
            for (i, (kind, _)) in self.phdrs.iter().enumerate() {
                let at = out.len();
                out.resize(at + phsize, 0);
                put32(&mut out, at, *kind);
                let (off, len) = ph_data[i];
                if is64 {
                    put64(&mut out, at + 8, off);
                    put64(&mut out, at + 32, len);
                    put64(&mut out, at + 48, 4);
                } else {
                    put32(&mut out, at + 4, off as u32);
                    put32(&mut out, at + 16, len as u32);
                    put32(&mut out, at + 28, 4);
                }
            }
            let shoff = out.len() as u64;
            let mut shdrs: Vec<(u32, u32, u64, u64)> = vec![(0, 0, 0, 0)];
            for (i, (_, kind, _)) in self.sections.iter().enumerate() {
                let (n, off, len) = sh_data[i];
                shdrs.push((n, *kind, off, len));
            }
            shdrs.push((shstr_name, 3, strtab_at, strtab.len() as u64));
            for (n, kind, off, len) in &shdrs {
                let at = out.len();
                out.resize(at + shsize, 0);
                put32(&mut out, at, *n);
                put32(&mut out, at + 4, *kind);
                if is64 {
                    put64(&mut out, at + 24, *off);
                    put64(&mut out, at + 32, *len);
                } else {
                    put32(&mut out, at + 16, *off as u32);
                    put32(&mut out, at + 20, *len as u32);
                }
            }
            let rest = if is64 { 52 } else { 40 };
            putw(&mut out, if is64 { 32 } else { 28 }, phoff);
            putw(&mut out, if is64 { 40 } else { 32 }, shoff);
            put16(&mut out, rest, ehsize as u16);
            put16(&mut out, rest + 2, phsize as u16);
            put16(&mut out, rest + 4, self.phdrs.len() as u16);
            put16(&mut out, rest + 6, shsize as u16);
            put16(&mut out, rest + 8, shdrs.len() as u16);
            put16(&mut out, rest + 10, (shdrs.len() - 1) as u16);
            out
        }
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(name);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v.extend_from_slice(desc);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    }

    const INTERP: &[u8] = b"/lib64/ld-linux-x86-64.so.2\0";

    #[test]
    fn dynamic_and_static_in_both_classes() {
        for is64 in [true, false] {
            let e = parse(&Builder::new(is64).ph(PT_INTERP, INTERP).build()[..]).unwrap();
            assert_eq!(e.bits, if is64 { 64 } else { 32 });
            assert_eq!(e.interp.as_deref(), Some(&INTERP[..INTERP.len() - 1]));
            assert!(!e.go);
            let e = parse(&Builder::new(is64).ph(1, b"code").build()[..]).unwrap();
            assert_eq!(e.interp, None, "no PT_INTERP: static");
            assert!(!e.go);
        }
    }

    #[test]
    fn big_endian_headers() {
        for is64 in [true, false] {
            let e = parse(
                &Builder::new(is64)
                    .big_endian()
                    .ph(PT_INTERP, INTERP)
                    .build()[..],
            )
            .unwrap();
            assert_eq!(e.interp.as_deref(), Some(&INTERP[..INTERP.len() - 1]));
            assert_eq!(e.machine, if is64 { 62 } else { 3 });
            let e = parse(
                &Builder::new(is64)
                    .big_endian()
                    .section(".go.buildinfo", 1, b"x")
                    .build()[..],
            )
            .unwrap();
            assert!(e.go && e.interp.is_none());
        }
    }

    #[test]
    fn go_by_note_segment_note_section_or_buildinfo() {
        let gnu = note(b"GNU\0", 3, &[1; 20]);
        let go = note(b"Go\0", 4, b"abc/def");
        for is64 in [true, false] {
            let both = [gnu.clone(), go.clone()].concat();
            let e = parse(&Builder::new(is64).ph(PT_NOTE, &both).build()[..]).unwrap();
            assert!(e.go, "Go note after a GNU one in PT_NOTE");
            let e = parse(&Builder::new(is64).ph(PT_NOTE, &gnu).build()[..]).unwrap();
            assert!(!e.go, "a GNU build-id note alone");
            let e =
                parse(&Builder::new(is64).section(".note.x", SHT_NOTE, &go).build()[..]).unwrap();
            assert!(e.go, "Go note in a note section");
            let e = parse(
                &Builder::new(is64)
                    .ph(PT_INTERP, INTERP)
                    .section(".go.buildinfo", 1, b"\xff Go buildinf:")
                    .build()[..],
            )
            .unwrap();
            assert!(e.go && e.interp.is_some(), "cgo: dynamic and Go");
            let e = parse(&Builder::new(is64).section(".data", 1, b"Go").build()[..]).unwrap();
            assert!(!e.go);
        }
    }

    #[test]
    fn not_elf_and_malformed_files_are_errors_not_panics() {
        assert!(matches!(parse(&b""[..]), Err(Error::NotElf)));
        assert!(matches!(parse(&b"#!/bin/sh\n"[..]), Err(Error::NotElf)));
        assert!(matches!(parse(&b"\x7fELF"[..]), Err(Error::NotElf)));
        let good = Builder::new(true)
            .ph(PT_INTERP, INTERP)
            .ph(PT_NOTE, &note(b"Go\0", 4, b"x"))
            .section(".go.buildinfo", 1, b"x")
            .build();
        // Every truncation, and every single-byte corruption of the headers.
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        for i in 0..good.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                let _ = parse(&b[..]);
            }
        }
        let mut b = good.clone();
        b[4] = 9;
        assert!(matches!(parse(&b[..]), Err(Error::Bad(_))));
        // A huge table size is refused before anything is allocated.
        let mut b = good.clone();
        b[56..58].copy_from_slice(&0xfffe_u16.to_le_bytes()); // e_phnum
        b[54..56].copy_from_slice(&0xffff_u16.to_le_bytes()); // e_phentsize
        assert!(
            matches!(parse(&b[..]), Err(Error::Bad(_))),
            "{:?}",
            parse(&b[..])
        );
    }

    #[test]
    fn real_binaries() {
        let sh = std::fs::File::open("/bin/sh").unwrap();
        let e = parse(&sh).unwrap();
        assert!(e.interp.is_some(), "/bin/sh is dynamically linked");
        assert!(!e.go);
        let me = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        let e = parse(&me).unwrap();
        assert!(e.interp.is_some() && !e.go);
        assert_eq!(e.bits, (std::mem::size_of::<usize>() * 8) as u8);
        // The dynamic loader itself has no PT_INTERP.
        if let Ok(ld) = std::fs::File::open(std::str::from_utf8(&e.interp.unwrap()).unwrap()) {
            assert_eq!(parse(&ld).unwrap().interp, None);
        }
    }
}
