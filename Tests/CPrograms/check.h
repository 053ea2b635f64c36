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

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif
