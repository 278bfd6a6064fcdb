//! Symbols found in the loaded objects' own tables: the front exports `dlsym` and
//! `dlopen` itself, so it cannot ask `dlsym` for them (that is us), and a versioned
//! reference would bind to our unversioned export too.
//!
//! `dl_iterate_phdr` lists the objects (once into [`Objects`] for the front's start,
//! or streamed: [`next_after`], [`Libc::find`]); each name is then a hash lookup as the
//! dynamic loader does it — the GNU table with its Bloom filter, else the System V
//! one — taking only the default version of a versioned symbol
//! (`posix_spawn@@GLIBC_2.15`, not the compatibility `posix_spawn@GLIBC_2.2.5`) and
//! the implementation of an indirect function.

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
    /// `DT_HASH`, for an object linked without a GNU hash table (`--hash-style=sysv`).
    sysv_hash: *const u32,
    symtab: *const Sym,
    strtab: *const u8,
    versym: *const u16,
}

/// One loaded object as `dl_iterate_phdr` reports it; its tables are read when first
/// asked for (most objects are never asked).
#[derive(Clone, Copy)]
pub struct Object {
    pub base: usize,
    /// The loader's file name for it (`dladdr`'s `dli_fname`), NUL-terminated.
    pub name: *const c_char,
    phdr: *const libc::Elf64_Phdr,
    phnum: usize,
}

impl Object {
    fn phdrs(&self) -> &[libc::Elf64_Phdr] {
        // SAFETY: the program headers the loader reported for a mapped object; startup
        // objects are never unmapped, and the core's own lookups happen while the
        // objects it walks are loaded.
        unsafe { core::slice::from_raw_parts(self.phdr, self.phnum) }
    }

    /// Whether `addr` lies in one of its loaded segments.
    pub fn holds(&self, addr: usize) -> bool {
        self.phdrs().iter().any(|p| {
            let start = self.base + p.p_vaddr as usize;
            p.p_type == libc::PT_LOAD && addr >= start && addr - start < p.p_memsz as usize
        })
    }

    pub fn tables(&self) -> Option<Libc> {
        let d = self.phdrs().iter().find(|p| p.p_type == libc::PT_DYNAMIC)?;
        // SAFETY: the mapped dynamic section of this object.
        unsafe { read(self.base, (self.base + d.p_vaddr as usize) as *const Dyn) }
    }

    pub fn lookup(&self, name: &[u8]) -> usize {
        self.tables().map_or(0, |t| t.lookup(name))
    }

    /// Another copy of the front (or this one): it exports the front's entry point.
    fn is_front(&self) -> bool {
        self.lookup(b"sockexit_front_attach") != 0
    }

    /// Its definition of `name` as a next definition, 0 if none: another copy of the
    /// front never counts, its exports lead back to us.
    fn next_definition(&self, name: &[u8]) -> usize {
        match self.lookup(name) {
            a if a != 0 && self.is_front() => 0,
            a => a,
        }
    }

    fn is_libc(&self) -> bool {
        if self.name.is_null() {
            return false;
        }
        // SAFETY: the loader's NUL-terminated name.
        let n = unsafe { CStr::from_ptr(self.name) }.to_bytes();
        n == b"libc.so.6" || n.ends_with(b"/libc.so.6")
    }
}

/// The address of the first definition of `name` in an object loaded after the one
/// at `me` (what `dlsym(RTLD_NEXT, name)` answers for a startup object: the loader's
/// list is the global search order), or 0.
pub fn next_after(me: usize, name: &[u8]) -> usize {
    let (mut seen_me, mut addr) = (false, 0);
    each_loaded(|o| {
        if !seen_me {
            seen_me = o.base == me;
            return true;
        }
        addr = o.next_definition(name);
        addr == 0
    });
    addr
}

/// `f` over every loaded object in the loader's order, without a limit or a list,
/// until it returns false.
fn each_loaded<F: FnMut(Object) -> bool>(mut f: F) {
    /// # Safety
    /// Called by `dl_iterate_phdr` with a valid `info`; `data` is an `F`.
    unsafe extern "C" fn each<F: FnMut(Object) -> bool>(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        let info = &*info;
        let f = &mut *(data as *mut F);
        let o = Object {
            base: info.dlpi_addr as usize,
            name: info.dlpi_name,
            phdr: info.dlpi_phdr,
            phnum: info.dlpi_phnum as usize,
        };
        (!f(o)) as c_int
    }
    // SAFETY: the callback only reads what the loader reports; `data` is `f`.
    unsafe { libc::dl_iterate_phdr(Some(each::<F>), &mut f as *mut F as *mut c_void) };
}

/// The loaded objects in the loader's order (at most 32), from one `dl_iterate_phdr`
/// pass, for several lookups.
#[derive(Clone, Copy)]
pub struct Objects {
    list: [Option<Object>; 32],
    /// More objects were loaded than the list holds.
    full: bool,
    /// The object the reader lives in, found while the loader's report was current.
    me: Option<Object>,
}

impl Objects {
    pub const EMPTY: Objects = Objects {
        list: [None; 32],
        full: false,
        me: None,
    };

    /// The loaded objects, and which of them holds the address `mine`.
    pub fn read(mine: usize) -> Objects {
        let mut o = Objects::EMPTY;
        o.read_into(mine);
        o
    }

    /// Fill an empty list in place (the front's is a static: no copy).
    pub fn read_into(&mut self, mine: usize) {
        let mut slots = self.list.iter_mut();
        let (mut full, mut me) = (false, None);
        each_loaded(|o| {
            if me.is_none() && o.holds(mine) {
                me = Some(o);
            }
            match slots.next() {
                Some(slot) => {
                    *slot = Some(o);
                    true
                }
                None => {
                    full = true;
                    // Still looking for ourselves: a front dlopened late sits far down.
                    me.is_none()
                }
            }
        });
        self.full = full;
        self.me = me;
    }

    pub fn iter(&self) -> impl Iterator<Item = Object> + '_ {
        self.list.iter().map_while(|e| *e)
    }

    /// The object that holds the address given to [`Objects::read`], found while the
    /// loader's report was current (no later walk through objects that may have been
    /// unloaded since).
    pub fn me(&self) -> Option<Object> {
        self.me
    }

    /// [`next_after`] over the start's list.
    pub fn next_after(&self, me: usize, name: &[u8]) -> usize {
        if self.full {
            // Past what the list holds: a pass over every object (the loader's lock).
            return next_after(me, name);
        }
        self.iter()
            .skip_while(|o| o.base != me)
            .skip(1)
            .map(|o| o.next_definition(name))
            .find(|&a| a != 0)
            .unwrap_or(0)
    }

    /// The load address of the first object before the one at `me` that defines
    /// `name` (0 if none).
    pub fn first_before(&self, me: usize, name: &[u8]) -> usize {
        self.iter()
            .take_while(|o| o.base != me)
            .find(|o| o.lookup(name) != 0)
            .map_or(0, |o| o.base)
    }
}

impl Libc {
    /// libc's tables, `None` when no libc.so.6 is mapped (a static program never loads
    /// us) or its tables cannot be read.
    pub fn find() -> Option<Libc> {
        let mut libc = None;
        each_loaded(|o| {
            if o.is_libc() {
                libc = Some(o);
            }
            libc.is_none()
        });
        libc?.tables()
    }

    /// The address of libc's default definition of `name`, 0 if absent.
    pub fn lookup(&self, name: &[u8]) -> usize {
        // SAFETY: the tables were read from libc's mapped dynamic section; the GNU hash
        // layout is the one the loader itself walks.
        unsafe { self.walk(name) }
    }

    unsafe fn walk(&self, name: &[u8]) -> usize {
        if self.gnu_hash.is_null() {
            return self.walk_sysv(name);
        }
        let h = name
            .iter()
            .fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32));
        let nbuckets = *self.gnu_hash;
        let symoffset = *self.gnu_hash.add(1);
        let bloom_words = *self.gnu_hash.add(2) as usize;
        let shift = *self.gnu_hash.add(3);
        if nbuckets == 0 || bloom_words == 0 {
            return 0;
        }
        // The Bloom filter first, as the loader does: most objects asked do not define
        // the name, and this answers them in a few instructions.
        let bloom = self.gnu_hash.add(4) as *const u64;
        let word = *bloom.add((h as usize / 64) % bloom_words);
        if (word >> (h % 64)) & (word >> ((h >> (shift % 32)) % 64)) & 1 == 0 {
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
            if (ch | 1) == (h | 1) {
                if let Some(a) = self.defines(i, name) {
                    return a;
                }
            }
            if ch & 1 != 0 {
                return 0;
            }
            i += 1;
        }
    }

    /// The System V hash table: `nbucket`, `nchain`, the buckets, the chains.
    unsafe fn walk_sysv(&self, name: &[u8]) -> usize {
        if self.sysv_hash.is_null() {
            return 0;
        }
        let h = name.iter().fold(0u32, |h, &c| {
            let h = (h << 4).wrapping_add(c as u32);
            let g = h & 0xf000_0000;
            (h ^ (g >> 24)) & !g
        });
        let (nbucket, nchain) = (*self.sysv_hash, *self.sysv_hash.add(1));
        if nbucket == 0 {
            return 0;
        }
        let bucket = self.sysv_hash.add(2);
        let chain = bucket.add(nbucket as usize);
        let mut i = *bucket.add((h % nbucket) as usize);
        // At most nchain steps: a corrupt chain must not loop for ever.
        for _ in 0..nchain {
            if i == 0 || i >= nchain {
                return 0;
            }
            if let Some(a) = self.defines(i, name) {
                return a;
            }
            i = *chain.add(i as usize);
        }
        0
    }

    /// Symbol `i`'s address when it is a default definition of `name`; an indirect
    /// function (`STT_GNU_IFUNC`) is asked for its implementation, as the loader does.
    unsafe fn defines(&self, i: u32, name: &[u8]) -> Option<usize> {
        const STT_GNU_IFUNC: u8 = 10;
        let sym = &*self.symtab.add(i as usize);
        let hidden = !self.versym.is_null() && *self.versym.add(i as usize) & 0x8000 != 0;
        if sym.shndx == 0 || sym.value == 0 || hidden {
            return None;
        }
        let s = CStr::from_ptr(self.strtab.add(sym.name as usize) as *const c_char);
        if s.to_bytes() != name {
            return None;
        }
        let addr = self.base + sym.value as usize;
        if sym.info & 0xf == STT_GNU_IFUNC {
            type Resolver = unsafe extern "C" fn() -> usize;
            // SAFETY: an IFUNC symbol's value is its resolver, which takes nothing (on
            // x86-64 glibc) and returns the implementation.
            return Some(core::mem::transmute::<usize, Resolver>(addr)());
        }
        Some(addr)
    }
}

/// # Safety
/// `dynamic` is the mapped dynamic section of the object loaded at `base`.
unsafe fn read(base: usize, mut dynamic: *const Dyn) -> Option<Libc> {
    const DT_NULL: i64 = 0;
    const DT_HASH: i64 = 4;
    const DT_STRTAB: i64 = 5;
    const DT_SYMTAB: i64 = 6;
    const DT_GNU_HASH: i64 = 0x6fff_fef5;
    const DT_VERSYM: i64 = 0x6fff_fff0;
    let (mut h, mut sy, mut st, mut vs, mut sv) = (0usize, 0usize, 0usize, 0usize, 0usize);
    while (*dynamic).tag != DT_NULL {
        let v = (*dynamic).val as usize;
        match (*dynamic).tag {
            DT_GNU_HASH => h = v,
            DT_HASH => sv = v,
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
    let opt = |v: usize| if v == 0 { 0 } else { abs(v) };
    ((h != 0 || sv != 0) && sy != 0 && st != 0).then(|| Libc {
        base,
        gnu_hash: opt(h) as *const u32,
        sysv_hash: opt(sv) as *const u32,
        symtab: abs(sy) as *const Sym,
        strtab: abs(st) as *const u8,
        versym: if vs == 0 {
            core::ptr::null()
        } else {
            abs(vs) as *const u16
        },
    })
}
