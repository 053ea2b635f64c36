// check.h — tiny assertion helpers shared by the C test programs.
//
// The programs in this directory are compiled by Tests/GoMallocIntegrationTests/DropIn.swift with
// `cc -O1 -g -pthread` (C++ ones with `c++`) and run twice in spirit: against glibc's malloc
// (to validate the programs themselves) and with libgomalloc-preload.so in LD_PRELOAD.
// A failed check prints `FAIL file:line: what` to stderr and exits 1; a program that passes
// prints `OK <name>` as its last stdout line.
//
// Nothing here allocates before main, and the failure path uses only write(2)-backed stdio
// on stderr (unbuffered), so a broken allocator cannot hide the message.
#ifndef GOMALLOC_TEST_CHECK_H
#define GOMALLOC_TEST_CHECK_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

#define CHECKF(cond, ...)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/// Hide a value from the optimiser, so that the compiler cannot fold calls such as
/// malloc(SIZE_MAX) or remove an unused malloc/free pair (GCC knows their semantics).
static inline size_t opaque(size_t x) {
    volatile size_t v = x;
    return v;
}

/// Make the compiler believe `p` escapes, so allocations stay real.
static inline void escape(const void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

/// The alignment the drop-in promises for a block of `size` bytes: 16 above 8 bytes,
/// otherwise the largest power of two not above the size (1 for size 0).
static inline uintptr_t promised_alignment(size_t size) {
    if (size > 8) return 16;
    uintptr_t a = 1;
    while (a * 2 <= size) a *= 2;
    return a;
}

static inline int is_aligned(const void *p, uintptr_t alignment) {
    return ((uintptr_t)p & (alignment - 1)) == 0;
}

/// A cheap deterministic PRNG (xorshift64*), one state per thread.
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/// Fill `n` bytes at `p` with a pattern derived from `seed`; `verify_pattern` checks it.
static inline void fill_pattern(void *p, size_t n, uint64_t seed) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)((seed * 131 + i * 7 + (i >> 8)) ^ (seed >> 5));
}

static inline int verify_pattern(const void *p, size_t n, uint64_t seed) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)((seed * 131 + i * 7 + (i >> 8)) ^ (seed >> 5))) return 0;
    return 1;
}

/// A number field of /proc/self/status ("VmRSS:" in KiB, "Threads:"), read with open and
/// read into a stack buffer: no heap call. -1 when the file or the field is missing.
static inline long proc_status_field(const char *name) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *p = strstr(buf, name);
    return p ? atol(p + strlen(name)) : -1;
}

/// Grow the heap past 64 MiB once and give it back, before a program counts the bytes in
/// use for a leak check: under GoMalloc that starts its background scavenger thread, whose
/// creation allocates glibc's per-thread block (its DTV) for as long as the thread lives —
/// so the count before the measured work already holds it. (volatile: GCC drops a bare
/// malloc/free pair.)
static inline void start_allocator_threads(void) {
    volatile char *big = (volatile char *)malloc(opaque((size_t)80 << 20));
    CHECK(big != NULL);
    big[0] = 1;
    free((void *)big);
}

#endif
