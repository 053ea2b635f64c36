// pair-cost: the fast-path cost of one malloc+free pair, for `gomalloc bench`'s
// instruction counts (not a timed workload). Run under
//   valgrind --tool=callgrind --zero-before='pair_loop_*' --dump-after='pair_loop_*'
// it warms the allocator up with the same size, then runs two loops of malloc(size)+free
// of different lengths, each in its own non-inlined function, so callgrind writes one
// profile per loop that counts only that loop (the allocator calls included). The harness
// divides the difference of the two counts by the difference of the loop lengths: the
// loop's own set-up and any one-time cost inside the first call cancel out.
//
// Arguments: size, short, long (iterations of the two measured loops), warm.
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

int main(int argc, char **argv) {
    arg_t args[] = {
        {"size", 16, "bytes per malloc"},
        {"short", 2000, "iterations of the shorter measured loop"},
        {"long", 12000, "iterations of the longer measured loop"},
        {"warm", 1000, "warm-up iterations before measuring"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("pair-cost", argc, argv, args, nargs);
    request = (size_t)arg_get(args, nargs, "size");
    long nshort = arg_get(args, nargs, "short"), nlong = arg_get(args, nargs, "long");
    pair_warm(arg_get(args, nargs, "warm"));
    pair_loop_short(nshort);
    pair_loop_long(nlong);
    printf("workload=pair-cost size=%zu short=%ld long=%ld\n", request, nshort, nlong);
    return 0;
}
