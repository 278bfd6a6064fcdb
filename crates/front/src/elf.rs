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

/// The symbol lookup tables of libc.
#[derive(Clone, Copy)]
pub struct Libc {
    base: usize,
    gnu_hash: *const u32,
    symtab: *const Sym,
    strtab: *const u8,
    versym: *const u16,
}

impl Libc {
    /// libc's tables, `None` when no libc.so.6 is mapped (a static program never loads
    /// us) or its tables cannot be read.
    pub fn find() -> Option<Libc> {
        let mut found: Option<Libc> = None;
        // SAFETY: the callback only reads the program headers and dynamic sections the
        // loader reports for mapped objects; `data` is our `found`.
        unsafe { libc::dl_iterate_phdr(Some(each_object), &mut found as *mut _ as *mut c_void) };
        found
    }

    /// The address of libc's default definition of `name`, 0 if absent.
    pub fn lookup(&self, name: &[u8]) -> usize {
        // SAFETY: the tables were read from libc's mapped dynamic section; the GNU hash
        // layout is the one the loader itself walks.
        unsafe { self.walk(name) }
    }

    unsafe fn walk(&self, name: &[u8]) -> usize {
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
/// Called by `dl_iterate_phdr` with a valid `info`; `data` is an `Option<Libc>`.
unsafe extern "C" fn each_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> c_int {
    let info = &*info;
    if info.dlpi_name.is_null() {
        return 0;
    }
    let name = CStr::from_ptr(info.dlpi_name).to_bytes();
    if !(name == b"libc.so.6" || name.ends_with(b"/libc.so.6")) {
        return 0;
    }
    let base = info.dlpi_addr as usize;
    let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
    if let Some(d) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) {
        *(data as *mut Option<Libc>) = read(base, (base + d.p_vaddr as usize) as *const Dyn);
    }
    1 // libc found: stop
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
