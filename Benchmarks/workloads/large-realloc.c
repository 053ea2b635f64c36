// large-realloc: large blocks and realloc growth. Two parts, one after the other:
//  1. Large blocks, modelled on mimalloc-bench's malloc-large: a fixed number of live slots;
//     each iteration frees a random slot's block and allocates a new one with a size drawn
//     log-uniformly between min and max (256 KiB to 16 MiB by default), touching every page
//     (so the cost of fresh pages and the reuse of freed ones both count, and RSS is real).
//  2. Realloc growth, like a growing vector or string buffer: several buffers, grown in
//     turn from 16 B by a random factor of 1.05-1.5 up to growmax, then shrunk back by
//     halving; contents (one word per 64-byte line) are checked after every realloc.
//     Growing several buffers in turn keeps the allocator from always extending in place.
//
// Arguments: live, iters, min, max (part 1); grow (buffers), growmax, growrounds (part 2);
// seed.
#include "common.h"
#include <math.h>

static inline void grid_write(unsigned char *p, size_t from, size_t to, uint64_t tag) {
    for (size_t off = from; off + 8 <= to; off += 64) {
        uint64_t w = pattern_word(tag, off / 8);
        memcpy(p + off, &w, 8);
    }
}

/// First grid offset not yet written when a block had n bytes.
static inline size_t grid_end(size_t n) { return n < 8 ? 0 : ((n - 8) / 64 + 1) * 64; }

static inline void grid_check(const unsigned char *p, size_t n, uint64_t tag, const char *what) {
    for (size_t off = 0; off + 8 <= n; off += 64) {
        uint64_t w = pattern_word(tag, off / 8);
        if (memcmp(p + off, &w, 8) != 0)
            corruption("%s: buffer %p of %zu bytes (tag %llx) lost its contents at offset %zu", what,
                       (const void *)p, n, (unsigned long long)tag, off);
    }
}

typedef struct {
    unsigned char *p;
    size_t size;
    uint64_t tag;
} buf_t;

int main(int argc, char **argv) {
    arg_t args[] = {
        {"live", 20, "large blocks live at a time (part 1)"},
        {"iters", 400, "large block replacements (part 1)"},
        {"min", 256 << 10, "smallest large block"},
        {"max", 16 << 20, "largest large block"},
        {"grow", 8, "buffers grown with realloc in turn (part 2)"},
        {"growmax", 8 << 20, "size a buffer grows to before it is shrunk again"},
        {"growrounds", 4, "grow/shrink cycles per buffer"},
        {"threads", 1, "accepted for uniformity; single-threaded"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("large-realloc", argc, argv, args, nargs);
    long nlive = arg_get(args, nargs, "live"), niters = arg_get(args, nargs, "iters");
    long minsize = arg_get(args, nargs, "min"), maxsize = arg_get(args, nargs, "max");
    long ngrow = arg_get(args, nargs, "grow"), growmax = arg_get(args, nargs, "growmax");
    long growrounds = arg_get(args, nargs, "growrounds");
    long seed = arg_get(args, nargs, "seed");
    if (nlive < 1 || niters < 0 || minsize < 64 || maxsize < minsize || ngrow < 0 || growmax < 64 || growrounds < 0)
        die("bad arguments");
    rng_t rng = rng_seeded((uint64_t)seed, 1);
    uint64_t tag = 1, checksum = 0;
    double t0 = now_seconds();

    // Part 1: large blocks.
    buf_t *slots = (buf_t *)calloc((size_t)nlive, sizeof(buf_t));
    double lmin = log((double)minsize), lmax = log((double)maxsize);
    for (long i = 0; i < niters + nlive; i++) {
        buf_t *s = &slots[i < nlive ? i : (long)rng_below(&rng, (uint64_t)nlive)];
        if (s->p != NULL) {
            verify(s->p, s->size, s->tag, "large-realloc (large)");
            checksum = mix(checksum, s->tag ^ s->size);
            free(s->p);
        }
        double u = (double)(rng_next(&rng) >> 11) * (1.0 / 9007199254740992.0);
        s->size = (size_t)exp(lmin + (lmax - lmin) * u);
        s->tag = tag++;
        s->p = (unsigned char *)xmalloc(s->size);
        fill(s->p, s->size, s->tag);
    }
    for (long i = 0; i < nlive; i++) {
        verify(slots[i].p, slots[i].size, slots[i].tag, "large-realloc (large, final)");
        free(slots[i].p);
    }
    free(slots);

    // Part 2: realloc growth and shrinking.
    buf_t *bufs = (buf_t *)calloc((size_t)ngrow, sizeof(buf_t));
    long reallocs = 0;
    for (long round = 0; round < growrounds; round++) {
        for (long i = 0; i < ngrow; i++) {
            bufs[i].tag = tag++;
            bufs[i].size = 16;
            bufs[i].p = (unsigned char *)xmalloc(16);
            grid_write(bufs[i].p, 0, 16, bufs[i].tag);
        }
        // Grow all buffers in turn until each has reached growmax.
        for (int growing = 1; growing;) {
            growing = 0;
            for (long i = 0; i < ngrow; i++) {
                buf_t *b = &bufs[i];
                if (b->size >= (size_t)growmax) continue;
                growing = 1;
                size_t n = (size_t)((double)b->size * (1.05 + 0.45 * (double)rng_below(&rng, 1000) / 1000.0)) + 16;
                if (n > (size_t)growmax) n = (size_t)growmax;
                unsigned char *q = (unsigned char *)realloc(b->p, n);
                if (q == NULL) die("realloc(%zu) returned NULL", n);
                reallocs++;
                grid_check(q, b->size, b->tag, "large-realloc (grow)");
                grid_write(q, grid_end(b->size), n, b->tag);
                b->p = q;
                b->size = n;
            }
        }
        // Shrink them again by halving, checking what is kept.
        for (int shrinking = 1; shrinking;) {
            shrinking = 0;
            for (long i = 0; i < ngrow; i++) {
                buf_t *b = &bufs[i];
                if (b->size <= 16) continue;
                shrinking = 1;
                size_t n = b->size / 2 < 16 ? 16 : b->size / 2;
                unsigned char *q = (unsigned char *)realloc(b->p, n);
                if (q == NULL) die("realloc(%zu) returned NULL", n);
                reallocs++;
                grid_check(q, n, b->tag, "large-realloc (shrink)");
                b->p = q;
                b->size = n;
            }
        }
        for (long i = 0; i < ngrow; i++) {
            checksum = mix(checksum, bufs[i].tag ^ bufs[i].size);
            free(bufs[i].p);
        }
    }
    free(bufs);
    double elapsed = now_seconds() - t0;
    printf("workload=large-realloc large=%ld reallocs=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n",
           niters + nlive, reallocs, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
