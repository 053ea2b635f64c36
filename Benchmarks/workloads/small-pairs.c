// small-pairs: single-threaded malloc/free of small blocks, in batches: allocate `b` blocks,
// then free them in the order they were allocated, for b in {1, 25, 400, 1600}. Modelled on
// glibc's benchtests/bench-malloc-simple (fixed block sizes 16..256 B, several numbers of
// blocks allocated before they are freed) and, with random=1, on bench-malloc-thread's
// random small sizes. Each block gets its first and last word stamped and checked before
// it is freed, which keeps the cost of checking small next to malloc and free themselves.
//
// Arguments: iters (malloc/free pairs per thread), size (0: each of 16, 32, 64, 128, 256
// in turn), random (1: sizes uniform in [8, max]), max, threads (independent copies, as
// bench-malloc-thread does; the suite runs it with 1), seed.
#include "common.h"

static long niters, fixed_size, random_sizes, maxsize, nthreads, seed;

static const size_t std_sizes[] = {16, 32, 64, 128, 256};
static const long batches[] = {1, 25, 400, 1600};
#define NSTD (sizeof std_sizes / sizeof std_sizes[0])
#define NBATCH (sizeof batches / sizeof batches[0])
#define NRANDOM 65536

typedef struct {
    int index;
    uint64_t checksum;
    char pad[64];
} worker_t;

static void *worker(void *arg) {
    worker_t *w = (worker_t *)arg;
    rng_t rng = rng_seeded((uint64_t)seed, (uint64_t)w->index + 1);
    uint32_t *rsizes = NULL;
    if (random_sizes) {
        rsizes = (uint32_t *)xmalloc(sizeof(uint32_t) * NRANDOM);
        for (int i = 0; i < NRANDOM; i++) rsizes[i] = (uint32_t)rng_range(&rng, 8, (uint64_t)maxsize);
    }
    void **ptrs = (void **)xmalloc(sizeof(void *) * (size_t)batches[NBATCH - 1]);
    size_t nsizes = random_sizes || fixed_size > 0 ? 1 : NSTD;
    long per_combo = niters / (long)(nsizes * NBATCH);
    uint64_t sum = 0, tag = ((uint64_t)w->index + 1) << 40, r = 0;
    for (size_t si = 0; si < nsizes; si++) {
        size_t size = fixed_size > 0 ? (size_t)fixed_size : std_sizes[si];
        for (size_t bi = 0; bi < NBATCH; bi++) {
            long b = batches[bi];
            long loops = per_combo / b > 0 ? per_combo / b : 1;
            for (long l = 0; l < loops; l++) {
                uint64_t first = tag;
                size_t rfirst = r;
                for (long i = 0; i < b; i++) {
                    size_t n = random_sizes ? rsizes[r++ & (NRANDOM - 1)] : size;
                    ptrs[i] = xmalloc(n);
                    stamp(ptrs[i], n, tag++);
                }
                for (long i = 0; i < b; i++) {
                    size_t n = random_sizes ? rsizes[rfirst++ & (NRANDOM - 1)] : size;
                    check_stamp(ptrs[i], n, first + (uint64_t)i, "small-pairs");
                    free(ptrs[i]);
                }
                sum = mix(sum, (uint64_t)b * 131 + (uint64_t)l);
            }
        }
    }
    free(ptrs);
    free(rsizes);
    w->checksum = mix(sum, tag);
    return NULL;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"iters", 10000000, "malloc/free pairs per thread"},
        {"size", 0, "block size (0: 16, 32, 64, 128 and 256 in turn)"},
        {"random", 0, "1: random sizes in [8, max]"},
        {"max", 512, "largest size with random=1"},
        {"threads", 1, "independent threads running the same loop"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("small-pairs", argc, argv, args, nargs);
    niters = arg_get(args, nargs, "iters");
    fixed_size = arg_get(args, nargs, "size");
    random_sizes = arg_get(args, nargs, "random");
    maxsize = arg_get(args, nargs, "max");
    nthreads = arg_get(args, nargs, "threads");
    seed = arg_get(args, nargs, "seed");
    if (niters < 1 || fixed_size < 0 || maxsize < 8 || nthreads < 1) die("bad arguments");

    worker_t *ws = (worker_t *)calloc((size_t)nthreads, sizeof(worker_t));
    for (long t = 0; t < nthreads; t++) ws[t].index = (int)t;
    double t0 = now_seconds();
    if (nthreads == 1)
        worker(&ws[0]);
    else
        run_threads((int)nthreads, worker, ws, sizeof(worker_t));
    double elapsed = now_seconds() - t0;
    uint64_t checksum = 0;
    for (long t = 0; t < nthreads; t++) checksum = mix(checksum, ws[t].checksum);
    free(ws);
    printf("workload=small-pairs random=%ld pairs=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n",
           random_sizes, niters * nthreads, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
