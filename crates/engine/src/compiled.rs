//! The compiled section of a policy image: the big arrays a load would otherwise
//! build — the ranges of every large set file and the address dispatch — laid out so
//! a process that maps the image uses them in place (shared through the page cache,
//! no parse, no private copy).
//!
//! Layout (little-endian; offsets relative to the section, which starts 16-aligned in
//! the image): `u64 toc length | toc | zero padding to 16 | arrays`, each array
//! 16-aligned. The toc: the rule table (`crate::policy::table`); `u32 n`, n × `(v4,
//! v6)` ranges of the rules' address sets; then `u8` 1 if a dispatch
//! follows: per family `u32 bits, starts, class, index`, then 4 class lists and the
//! candidates. An array is `(u64 offset into arrays, u64 count)`.
//!
//! Casting goes through `zerocopy`, which checks length and alignment; every count and
//! offset is checked against the section, and [`crate::dispatch::Dispatch::from_parts`]
//! checks what lookups index, so a hostile section is an error, never a panic.

use crate::dispatch::Parts;
use crate::ranges::AddrSet;
use std::borrow::Cow;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A Fletcher-style checksum over 8-byte words in eight independent lanes (two
/// running sums each: any changed word changes the first, any moved word the second),
/// then mixed: what the compiled section is checked with at every load. It catches
/// accidents (a damaged or half-written file), not an attacker, who could rewrite it
/// — that is the publication directory's permission rule. FNV-1a, one byte at a
/// time, would cost each process ~2 ms for a 100,000-prefix policy; this, a few
/// hundredths (the sums vectorise).
pub fn fast_hash(bytes: &[u8]) -> u64 {
    const L: usize = 8;
    let mut a = [0u64; L];
    let mut b = [0u64; L];
    let mut blocks = bytes.chunks_exact(8 * L);
    for blk in &mut blocks {
        for i in 0..L {
            let w = u64::from_le_bytes(blk[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            a[i] = a[i].wrapping_add(w);
            b[i] = b[i].wrapping_add(a[i]);
        }
    }
    let mut tail = [0u8; 8 * L];
    let rest = blocks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    for i in 0..L {
        let w = u64::from_le_bytes(tail[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        a[i] = a[i].wrapping_add(w);
        b[i] = b[i].wrapping_add(a[i]);
    }
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut x = (bytes.len() as u64).wrapping_mul(K);
    for i in 0..L {
        x = (x ^ a[i]).wrapping_mul(K).rotate_left(29);
        x = (x ^ b[i]).wrapping_mul(K).rotate_left(31);
    }
    x ^ (x >> 32)
}

/// Builds a compiled section.
#[derive(Default)]
pub(crate) struct Writer {
    toc: Vec<u8>,
    arrays: Vec<u8>,
}

impl Writer {
    fn array<T: IntoBytes + Immutable>(&mut self, a: &[T]) {
        while !self.arrays.len().is_multiple_of(16) {
            self.arrays.push(0);
        }
        self.toc
            .extend_from_slice(&(self.arrays.len() as u64).to_le_bytes());
        self.toc.extend_from_slice(&(a.len() as u64).to_le_bytes());
        self.arrays.extend_from_slice(a.as_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.toc.extend_from_slice(&v.to_le_bytes());
    }

    /// The section for a rule table (`crate::policy::table`), the sets it names by
    /// index, and `dispatch`.
    pub(crate) fn section(table: &[u8], sets: &[&AddrSet], dispatch: Option<Parts>) -> Vec<u8> {
        let mut w = Writer::default();
        w.array(table);
        w.u32(sets.len() as u32);
        for s in sets {
            w.array(s.v4_ranges());
            w.array(s.v6_ranges());
        }
        match dispatch {
            None => w.toc.push(0),
            Some(p) => {
                w.toc.push(1);
                w.u32(p.v4.0);
                w.array(&p.v4.1);
                w.array(&p.v4.2);
                w.array(&p.v4.3);
                w.u32(p.v6.0);
                w.array(&p.v6.1);
                w.array(&p.v6.2);
                w.array(&p.v6.3);
                for l in &p.lists {
                    w.array(l);
                }
                w.array(&p.cands);
            }
        }
        let mut out = (w.toc.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&w.toc);
        while !out.len().is_multiple_of(16) {
            out.push(0);
        }
        out.extend_from_slice(&w.arrays);
        out
    }
}

/// Reads a compiled section: borrowed from `st` when the image is mapped for the
/// life of its use (`'static`), copied otherwise.
pub(crate) struct Reader<'a> {
    toc: &'a [u8],
    arrays: &'a [u8],
    st: Option<&'static [u8]>,
    /// Where `arrays` starts in `st`.
    base: usize,
}

/// Why a section was refused (the caller names the file).
pub(crate) type Bad = &'static str;

impl<'a> Reader<'a> {
    /// `sec`: the section; `st`: the same bytes, when they live long enough to borrow.
    pub(crate) fn new(sec: &'a [u8], st: Option<&'static [u8]>) -> Result<Reader<'a>, Bad> {
        let tl = sec
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or("compiled section truncated")?;
        let toc = sec
            .get(8..8usize.checked_add(tl).ok_or("toc")?)
            .ok_or("toc")?;
        let start = (8 + tl).next_multiple_of(16);
        let arrays = sec.get(start..).ok_or("arrays")?;
        Ok(Reader {
            toc,
            arrays,
            st,
            base: start,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if self.toc.len() < n {
            return Err("compiled section toc truncated");
        }
        let (h, t) = self.toc.split_at(n);
        self.toc = t;
        Ok(h)
    }

    fn u64(&mut self) -> Result<usize, Bad> {
        let b = self.take(8)?;
        usize::try_from(u64::from_le_bytes(b.try_into().expect("8 bytes"))).map_err(|_| "size")
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Bad> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn flag(&mut self) -> Result<bool, Bad> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("bad flag"),
        }
    }

    /// The next array of the toc.
    fn array<T>(&mut self) -> Result<Cow<'static, [T]>, Bad>
    where
        T: FromBytes + Immutable + KnownLayout + Clone + 'static,
        [T]: ToOwned<Owned = Vec<T>>,
    {
        let (off, n) = (self.u64()?, self.u64()?);
        let size = std::mem::size_of::<T>();
        let end = n
            .checked_mul(size)
            .and_then(|b| b.checked_add(off))
            .ok_or("array size")?;
        let bytes = self
            .arrays
            .get(off..end)
            .ok_or("array out of the section")?;
        match self.st {
            Some(st) => {
                let at = self.base + off;
                let b = st
                    .get(at..at + (end - off))
                    .ok_or("array out of the section")?;
                <[T]>::ref_from_bytes(b)
                    .map(Cow::Borrowed)
                    .map_err(|_| "misaligned array")
            }
            None => bytes
                .chunks_exact(size)
                .map(|c| T::read_from_bytes(c).map_err(|_| "array"))
                .collect::<Result<Vec<T>, _>>()
                .map(Cow::Owned),
        }
    }

    /// The rule table's bytes (always copied: small, and parsed at once).
    pub(crate) fn table(&mut self) -> Result<Vec<u8>, Bad> {
        Ok(self.array::<u8>()?.into_owned())
    }

    /// The ranges of the next set. Their order is not checked (the hash is for that):
    /// lookups in unsorted ranges stay in bounds and only answer wrongly.
    pub(crate) fn set(&mut self) -> Result<AddrSet, Bad> {
        let v4 = self.array::<[u32; 2]>()?;
        let v6 = self.array::<[u128; 2]>()?;
        Ok(AddrSet::from_ranges(v4, v6))
    }

    /// The dispatch arrays (checked by `Dispatch::from_parts`).
    pub(crate) fn dispatch(&mut self) -> Result<Parts, Bad> {
        let b4 = self.u32()?;
        let v4 = (b4, self.array()?, self.array()?, self.array()?);
        let b6 = self.u32()?;
        let v6 = (b6, self.array()?, self.array()?, self.array()?);
        let mut lists: [Vec<[u32; 2]>; 4] = Default::default();
        for l in &mut lists {
            *l = self.array::<[u32; 2]>()?.into_owned();
        }
        let cands = self.array()?;
        Ok(Parts {
            v4,
            v6,
            lists,
            cands,
        })
    }

    /// Whether the toc was read to its end.
    pub(crate) fn done(&self) -> bool {
        self.toc.is_empty()
    }
}
