// pair-cost: the fast-path cost of one malloc+free pair, for `gomalloc bench`'s
// instruction counts (not a timed workload). Run under
//   valgrind --tool=callgrind --zero-before='pair_loop_*' --dump-after='pair_loop_*'
// it warms the allocator up with the same size, then runs two loops of malloc(size)+free
// of different lengths, each in its own non-inlined function, so callgrind writes one
// profile per loop that counts only that loop (the allocator calls included). The harness
// divides the difference of the two counts by the difference of the loop lengths: the
// loop's own set-up and any one-time cost inside the first call cancel out.
//
// With cold=N it measures instead what a free of a cold object costs in data-cache misses:
// N objects of `size` bytes are allocated and written, a buffer larger than any simulated
// cache level the harness cares about (8 MiB) is swept so that neither the objects' metadata
// nor the objects are in D1, and cold_free_loop frees them in a shuffled order (a fixed
// seed); run under `valgrind --tool=callgrind --cache-sim=yes --dump-before=cold_free_loop
// --dump-after=cold_free_loop`, the second profile counts only that loop. The loop's own
// reads of the shuffled pointer array (one line per 8 frees) are the same for every
// allocator.
//
// Arguments: size, short, long (iterations of the two measured loops), warm, cold.
#include "common.h"

static volatile size_t request;  // keeps the compiler from folding the size into malloc

// The loop body, expanded into each measured function (a shared helper would become a
// tail call, which callgrind would not attribute to the measured function).
#define PAIR_LOOP(n)                                                   \
    do {                                                               \
        size_t size_ = request;                                        \
        for (long i_ = 0; i_ < (n); i_++) {                            \
            void *p_ = malloc(size_);                                  \
            /* The pointer escapes: GCC cannot drop the pair. */       \
            __asm__ volatile("" : : "r"(p_) : "memory");               \
            free(p_);                                                  \
        }                                                              \
    } while (0)

__attribute__((noinline)) void pair_warm(long n) { PAIR_LOOP(n); }
__attribute__((noinline)) void pair_loop_short(long n) { PAIR_LOOP(n); }
__attribute__((noinline)) void pair_loop_long(long n) { PAIR_LOOP(n); }

__attribute__((noinline)) void cold_free_loop(void **ptrs, long n) {
    for (long i = 0; i < n; i++) free(ptrs[i]);
}

static int cold_free(size_t size, long n) {
    void **ptrs = malloc((size_t)n * sizeof *ptrs);
    if (!ptrs) return 1;
    for (long i = 0; i < n; i++) {
        ptrs[i] = malloc(size);
        if (!ptrs[i]) return 1;
        memset(ptrs[i], (int)i, size);
    }
    // Fisher-Yates with a fixed xorshift seed: every allocator frees the same order of its
    // own objects.
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (long i = n - 1; i > 0; i--) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        long j = (long)(x % (uint64_t)(i + 1));
        void *t = ptrs[i]; ptrs[i] = ptrs[j]; ptrs[j] = t;
    }
    size_t flush = 8u << 20;
    volatile char *buf = malloc(flush);
    if (!buf) return 1;
    for (size_t i = 0; i < flush; i += 64) buf[i] = (char)i;
    cold_free_loop(ptrs, n);
    free((void *)buf);
    free(ptrs);
    printf("workload=pair-cost cold=%ld size=%zu\n", n, size);
    return 0;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"size", 16, "bytes per malloc"},
        {"short", 2000, "iterations of the shorter measured loop"},
        {"long", 12000, "iterations of the longer measured loop"},
        {"warm", 1000, "warm-up iterations before measuring"},
        {"cold", 0, "objects for the cold-free measurement instead (0: the pair loops)"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("pair-cost", argc, argv, args, nargs);
    request = (size_t)arg_get(args, nargs, "size");
    if (arg_get(args, nargs, "cold") > 0) return cold_free(request, arg_get(args, nargs, "cold"));
    long nshort = arg_get(args, nargs, "short"), nlong = arg_get(args, nargs, "long");
    pair_warm(arg_get(args, nargs, "warm"));
    pair_loop_short(nshort);
    pair_loop_long(nlong);
    printf("workload=pair-cost size=%zu short=%ld long=%ld\n", request, nshort, nlong);
    return 0;
}
