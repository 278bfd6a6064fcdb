//! libc's own functions, found in its dynamic symbol table: the front exports
//! `dlsym` and `dlopen` itself, so it cannot ask `dlsym` for them (that is us), and a
//! versioned reference would bind to our unversioned export too.
//!
//! One `dl_iterate_phdr` pass finds libc; each name is then a GNU-hash lookup, as the
//! dynamic loader does it, taking only the default version of a versioned symbol
//! (`posix_spawn@@GLIBC_2.15`, not the compatibility `posix_spawn@GLIBC_2.2.5`).

use core::ffi::CStr;
use libc::{c_char, c_int, c_void};

/// `Elf64_Sym`.
#[repr(C)]
struct Sym {
    name: u32,
    info: u8,
    other: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

/// `Elf64_Dyn`.
#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

/// The symbol lookup tables of one loaded object.
#[derive(Clone, Copy)]
pub struct Libc {
    base: usize,
    gnu_hash: *const u32,
    symtab: *const Sym,
    strtab: *const u8,
    versym: *const u16,
}

/// What one pass over the loaded objects looks for.
struct Search<'a> {
    /// Our own load address: objects before it, and it, are skipped for `next`.
    me: usize,
    name: &'a [u8],
    /// Which object: libc.so.6, the first after us that defines `name`, or the one at
    /// `me`.
    mode: Mode,
    found: Option<Libc>,
    addr: usize,
    seen_me: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Libc,
    NextAfterMe,
    /// Only the object loaded at `me`.
    At,
}

/// The address of the first definition of `name` in an object loaded after the one
/// at `me` (what `dlsym(RTLD_NEXT, name)` answers for a startup object: the loader's
/// list is the global search order), or 0.
pub fn next_after(me: usize, name: &[u8]) -> usize {
    search(me, name, Mode::NextAfterMe).1
}

/// The address of `name` in the object loaded at `base`, or 0.
pub fn in_object(base: usize, name: &[u8]) -> usize {
    search(base, name, Mode::At).1
}

/// The loaded objects' tables in the loader's order (at most 32), for several
/// lookups from one `dl_iterate_phdr` pass.
pub struct Objects {
    list: [Option<(usize, Libc)>; 32],
}

impl Objects {
    pub fn read() -> Objects {
        let mut o = Objects { list: [None; 32] };
        // SAFETY: the callback only reads what the loader reports; `data` is `o`.
        unsafe { libc::dl_iterate_phdr(Some(each_table), &mut o as *mut Objects as *mut c_void) };
        o
    }

    fn iter(&self) -> impl Iterator<Item = (usize, Libc)> + '_ {
        self.list.iter().map_while(|e| *e)
    }

    /// The first definition of `name` in an object after the one loaded at `me`.
    pub fn next_after(&self, me: usize, name: &[u8]) -> usize {
        self.iter()
            .skip_while(|(b, _)| *b != me)
            .skip(1)
            .map(|(_, t)| t.lookup(name))
            .find(|&a| a != 0)
            .unwrap_or(0)
    }

    /// The load address of the first object that defines `name` (0 if none).
    pub fn first_definer(&self, name: &[u8]) -> usize {
        self.iter()
            .find(|(_, t)| t.lookup(name) != 0)
            .map_or(0, |(b, _)| b)
    }
}

/// # Safety
/// Called by `dl_iterate_phdr` with a valid `info`; `data` is an `Objects`.
unsafe extern "C" fn each_table(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> c_int {
    let info = &*info;
    let o = &mut *(data as *mut Objects);
    let Some(slot) = o.list.iter_mut().find(|e| e.is_none()) else {
        return 1;
    };
    let base = info.dlpi_addr as usize;
    let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
    let t = phdrs
        .iter()
        .find(|p| p.p_type == libc::PT_DYNAMIC)
        .and_then(|d| read(base, (base + d.p_vaddr as usize) as *const Dyn));
    // An object without tables still holds its place (for `next_after`'s order).
    *slot = Some((base, t.unwrap_or(Libc::EMPTY)));
    0
}

fn search(me: usize, name: &[u8], mode: Mode) -> (Option<Libc>, usize) {
    let mut s = Search {
        me,
        name,
        mode,
        found: None,
        addr: 0,
        seen_me: false,
    };
    // SAFETY: the callback only reads the program headers and dynamic sections the
    // loader reports for mapped objects; `data` is our `s`.
    unsafe { libc::dl_iterate_phdr(Some(each_object), &mut s as *mut Search as *mut c_void) };
    (s.found, s.addr)
}

impl Libc {
    /// No symbols.
    const EMPTY: Libc = Libc {
        base: 0,
        gnu_hash: core::ptr::null(),
        symtab: core::ptr::null(),
        strtab: core::ptr::null(),
        versym: core::ptr::null(),
    };

    /// libc's tables, `None` when no libc.so.6 is mapped (a static program never loads
    /// us) or its tables cannot be read.
    pub fn find() -> Option<Libc> {
        search(0, b"", Mode::Libc).0
    }

    /// The address of libc's default definition of `name`, 0 if absent.
    pub fn lookup(&self, name: &[u8]) -> usize {
        // SAFETY: the tables were read from libc's mapped dynamic section; the GNU hash
        // layout is the one the loader itself walks.
        unsafe { self.walk(name) }
    }

    unsafe fn walk(&self, name: &[u8]) -> usize {
        if self.gnu_hash.is_null() {
            return 0;
        }
        let h = name
            .iter()
            .fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32));
        let nbuckets = *self.gnu_hash;
        let symoffset = *self.gnu_hash.add(1);
        let bloom_words = *self.gnu_hash.add(2) as usize;
        if nbuckets == 0 {
            return 0;
        }
        let buckets = self.gnu_hash.add(4 + bloom_words * 2);
        let chain = buckets.add(nbuckets as usize);
        let mut i = *buckets.add((h % nbuckets) as usize);
        if i < symoffset {
            return 0;
        }
        loop {
            let ch = *chain.add((i - symoffset) as usize);
            let sym = &*self.symtab.add(i as usize);
            let hidden = !self.versym.is_null() && *self.versym.add(i as usize) & 0x8000 != 0;
            if (ch | 1) == (h | 1) && sym.shndx != 0 && sym.value != 0 && !hidden {
                let s = CStr::from_ptr(self.strtab.add(sym.name as usize) as *const c_char);
                if s.to_bytes() == name {
                    return self.base + sym.value as usize;
                }
            }
            if ch & 1 != 0 {
                return 0;
            }
            i += 1;
        }
    }
}

/// # Safety
/// Called by `dl_iterate_phdr` with a valid `info`; `data` is a `Search`.
unsafe extern "C" fn each_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> c_int {
    let info = &*info;
    let s = &mut *(data as *mut Search);
    let base = info.dlpi_addr as usize;
    if s.mode == Mode::NextAfterMe && !s.seen_me {
        s.seen_me = base == s.me;
        return 0;
    }
    if s.mode == Mode::At && base != s.me {
        return 0;
    }
    if s.mode == Mode::Libc {
        if info.dlpi_name.is_null() {
            return 0;
        }
        let name = CStr::from_ptr(info.dlpi_name).to_bytes();
        if !(name == b"libc.so.6" || name.ends_with(b"/libc.so.6")) {
            return 0;
        }
    }
    let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
    let Some(d) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else {
        return 0;
    };
    let Some(t) = read(base, (base + d.p_vaddr as usize) as *const Dyn) else {
        return 0;
    };
    if s.mode == Mode::Libc {
        s.found = Some(t);
        return 1;
    }
    let a = t.lookup(s.name);
    if a == 0 {
        return 0;
    }
    s.found = Some(t);
    s.addr = a;
    1
}

/// # Safety
/// `dynamic` is the mapped dynamic section of the object loaded at `base`.
unsafe fn read(base: usize, mut dynamic: *const Dyn) -> Option<Libc> {
    const DT_NULL: i64 = 0;
    const DT_STRTAB: i64 = 5;
    const DT_SYMTAB: i64 = 6;
    const DT_GNU_HASH: i64 = 0x6fff_fef5;
    const DT_VERSYM: i64 = 0x6fff_fff0;
    let (mut h, mut sy, mut st, mut vs) = (0usize, 0usize, 0usize, 0usize);
    while (*dynamic).tag != DT_NULL {
        let v = (*dynamic).val as usize;
        match (*dynamic).tag {
            DT_GNU_HASH => h = v,
            DT_SYMTAB => sy = v,
            DT_STRTAB => st = v,
            DT_VERSYM => vs = v,
            _ => {}
        }
        dynamic = dynamic.add(1);
    }
    // The loader relocates these entries in place on most targets; an entry below the
    // load address is still an offset.
    let abs = |v: usize| if v < base { base + v } else { v };
    (h != 0 && sy != 0 && st != 0).then(|| Libc {
        base,
        gnu_hash: abs(h) as *const u32,
        symtab: abs(sy) as *const Sym,
        strtab: abs(st) as *const u8,
        versym: if vs == 0 {
            core::ptr::null()
        } else {
            abs(vs) as *const u16
        },
    })
}
