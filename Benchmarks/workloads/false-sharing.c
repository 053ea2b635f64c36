// false-sharing: threads repeatedly allocate a small object, write to it many times and
// free it. An allocator that hands objects on the same cache line to different threads
// makes the cores fight over that line. Modelled on cache-thrash and cache-scratch from
// the Hoard benchmarks (as run by mimalloc-bench):
//   passive=0 (active false sharing, cache-thrash): each thread allocates its own objects;
//   passive=1 (passive false sharing, cache-scratch): the main thread first allocates one
//            object per thread, back to back; each thread frees the object it was given and
//            then allocates, writes and frees its own, so an allocator that reuses a freed
//            object for the freeing thread keeps the threads on one cache line.
//
// Arguments: threads, iters (objects per thread), writes (passes over each object), size,
// passive, seed.
#include "common.h"

static long nthreads, niters, nwrites, objsize, passive, seed;

typedef struct {
    int index;
    unsigned char *given;  // passive mode: the object the main thread allocated for us
    uint64_t checksum;
    char pad[64];
} worker_t;

static void *worker(void *arg) {
    worker_t *w = (worker_t *)arg;
    uint64_t sum = 0;
    if (w->given != NULL) {
        verify(w->given, (size_t)objsize, (uint64_t)w->index + 1, "false-sharing (given)");
        free(w->given);
    }
    for (long i = 0; i < niters; i++) {
        volatile unsigned char *p = (volatile unsigned char *)xmalloc((size_t)objsize);
        for (long j = 0; j < objsize; j++) p[j] = (unsigned char)j;
        for (long k = 0; k < nwrites; k++)
            for (long j = 0; j < objsize; j++) p[j] = (unsigned char)(p[j] + 1);
        for (long j = 0; j < objsize; j++)
            if (p[j] != (unsigned char)(j + nwrites))
                corruption("false-sharing: thread %d object %p byte %ld is %u, expected %u", w->index,
                           (void *)p, j, p[j], (unsigned char)(j + nwrites));
        sum = mix(sum, (uint64_t)p[0] + (uint64_t)i);
        free((void *)p);
    }
    w->checksum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"threads", 2, "threads"},
        {"iters", 1000, "objects allocated, written and freed per thread"},
        {"writes", 2000, "write passes over each object"},
        {"size", 8, "object size in bytes"},
        {"passive", 0, "1: cache-scratch (objects handed out by the main thread first)"},
        {"seed", 1, "random seed (unused; accepted for uniformity)"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("false-sharing", argc, argv, args, nargs);
    nthreads = arg_get(args, nargs, "threads");
    niters = arg_get(args, nargs, "iters");
    nwrites = arg_get(args, nargs, "writes");
    objsize = arg_get(args, nargs, "size");
    passive = arg_get(args, nargs, "passive");
    seed = arg_get(args, nargs, "seed");
    if (nthreads < 1 || objsize < 1 || niters < 0 || nwrites < 0) die("bad arguments");

    worker_t *ws = (worker_t *)calloc((size_t)nthreads, sizeof(worker_t));
    for (long t = 0; t < nthreads; t++) {
        ws[t].index = (int)t;
        if (passive) {
            ws[t].given = (unsigned char *)xmalloc((size_t)objsize);
            fill(ws[t].given, (size_t)objsize, (uint64_t)t + 1);
        }
    }
    double t0 = now_seconds();
    run_threads((int)nthreads, worker, ws, sizeof(worker_t));
    double elapsed = now_seconds() - t0;
    uint64_t checksum = 0;
    for (long t = 0; t < nthreads; t++) checksum = mix(checksum, ws[t].checksum);
    free(ws);
    printf("workload=false-sharing passive=%ld threads=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n",
           passive, nthreads, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
