// cold-free: build a large data set of small objects, let it go cold, then free all of it,
// asking malloc_usable_size of each object first. Modelled on what Redis does on FLUSHALL
// (Debian's redis-server calls malloc_usable_size before every free to keep its memory
// count) and on any server dropping a big cache: the frees touch metadata that has long
// left the CPU caches, and the time is in how many cold lines a lookup and a free need.
// The objects (16-256 B, a few keyed 1-4 KiB) are linked in a random order, as a hash
// table's entries are, so the frees do not walk memory in address order.
//
// Arguments: objects, rounds (build + free cycles), seed.
#include <malloc.h>

#include "common.h"

int main(int argc, char **argv) {
    arg_t args[] = {
        {"threads", 1, "(one thread; accepted for the suite's uniform command line)"},
        {"objects", 2000000, "objects in the data set"},
        {"rounds", 1, "times the data set is built and freed"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("cold-free", argc, argv, args, nargs);
    long nobjects = arg_get(args, nargs, "objects");
    long nrounds = arg_get(args, nargs, "rounds");
    long seed = arg_get(args, nargs, "seed");
    if (nobjects < 1 || nrounds < 1) die("bad arguments");

    rng_t rng = rng_seeded((uint64_t)seed, 0);
    void **table = (void **)xmalloc(sizeof(void *) * (size_t)nobjects);
    uint32_t *sizes = (uint32_t *)xmalloc(sizeof(uint32_t) * (size_t)nobjects);
    double free_seconds = 0;
    uint64_t checksum = 0, usable = 0;
    double t0 = now_seconds();
    for (long r = 0; r < nrounds; r++) {
        for (long i = 0; i < nobjects; i++) {
            size_t n = rng_below(&rng, 64) == 0 ? 1024 + rng_below(&rng, 3072) : 16 + rng_below(&rng, 241);
            sizes[i] = (uint32_t)n;
            table[i] = xmalloc(n);
            stamp(table[i], n, (uint64_t)i + 1);
        }
        // A random order (Fisher-Yates), as a hash table's buckets are.
        for (long i = nobjects - 1; i > 0; i--) {
            long j = (long)rng_below(&rng, (uint64_t)i + 1);
            void *p = table[i];
            table[i] = table[j];
            table[j] = p;
            uint32_t s = sizes[i];
            sizes[i] = sizes[j];
            sizes[j] = s;
        }
        // Let the data set go cold: stream through an unrelated 64 MiB buffer.
        size_t coldn = (size_t)64 << 20;
        unsigned char *cold = (unsigned char *)xmalloc(coldn);
        memset(cold, (int)r, coldn);
        for (size_t k = 0; k < coldn; k += 64) checksum += cold[k];
        free(cold);
        double f0 = now_seconds();
        for (long i = 0; i < nobjects; i++) {
            size_t u = malloc_usable_size(table[i]);
            if (u < sizes[i]) corruption("cold-free: usable size %zu < %u", u, sizes[i]);
            usable += u;
            free(table[i]);
        }
        free_seconds += now_seconds() - f0;
    }
    double elapsed = now_seconds() - t0;
    free(table);
    free(sizes);
    printf("workload=cold-free objects=%ld seconds=%.3f free_seconds=%.3f usable=%llu checksum=%016llx maxrss_kib=%ld\n",
           nobjects * nrounds, elapsed, free_seconds, (unsigned long long)usable, (unsigned long long)checksum,
           maxrss_kib());
    return 0;
}
