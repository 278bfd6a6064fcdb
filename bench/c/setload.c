/* setload: what loading a 100k-prefix set would cost per exec under two designs for
 * BENCHMARKS.md's proposal (bench/run.sh --only setload). Not part of the library.
 *
 * usage: setload none|read|image FILE
 *   none   open + fstat the file, nothing else (the baseline of the comparison)
 *   read   read the whole text file into a fresh heap buffer: "read eagerly, compile
 *          lazily" pays at least this in every exec
 *   image  mmap a compiled range image and verify it completely before trusting it:
 *          header counts against the file size, every range well-formed, sorted and
 *          disjoint, and a 64-bit FNV-1a-style checksum over the body
 *
 * Image layout (little endian): u64 n4, u64 n6, n4 × (u32 lo, u32 hi),
 * n6 × (u128 lo, u128 hi) as pairs of u64 (low, high), u64 checksum.
 * Exits 0 when the file is what the mode expects, non-zero otherwise. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FNV_PRIME 0x100000001B3ull

static int v6_less(const uint64_t *a, const uint64_t *b) { /* a < b, u128 as (lo, hi) */
    return a[1] < b[1] || (a[1] == b[1] && a[0] < b[0]);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: setload none|read|image FILE\n");
        return 2;
    }
    int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 2;
    struct stat st;
    if (fstat(fd, &st) < 0) return 2;
    size_t n = (size_t)st.st_size;
    if (strcmp(argv[1], "none") == 0) return 0;
    if (strcmp(argv[1], "read") == 0) {
        char *b = malloc(n + 1);
        if (!b) return 2;
        size_t got = 0;
        while (got < n) {
            ssize_t r = read(fd, b + got, n - got);
            if (r <= 0) return 2;
            got += (size_t)r;
        }
        return memchr(b, '\n', n) ? 0 : 3;
    }
    if (strcmp(argv[1], "image") != 0 || n < 24) return 2;
    const uint8_t *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) return 2;
    uint64_t n4, n6, want;
    memcpy(&n4, m, 8);
    memcpy(&n6, m + 8, 8);
    if (n4 > n / 8 || n6 > n / 32 || 16 + n4 * 8 + n6 * 32 + 8 != n) return 4;
    const uint32_t *v4 = (const uint32_t *)(m + 16);
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < n4; i++) {
        uint32_t lo = v4[2 * i], hi = v4[2 * i + 1];
        if (lo > hi || (i && lo <= v4[2 * i - 1])) return 5;
        h = (h ^ ((uint64_t)lo << 32 | hi)) * FNV_PRIME;
    }
    const uint64_t *v6 = (const uint64_t *)(m + 16 + n4 * 8);
    for (uint64_t i = 0; i < n6; i++) {
        const uint64_t *lo = v6 + 4 * i, *hi = lo + 2;
        if (v6_less(hi, lo) || (i && !v6_less(lo - 2, lo))) return 5;
        for (int k = 0; k < 4; k++) h = (h ^ lo[k]) * FNV_PRIME;
    }
    memcpy(&want, m + n - 8, 8);
    return h == want ? 0 : 6;
}
