// tiny-strings: a program dominated by 1-8-byte requests, the case Go's tiny allocator is
// for: a symbol table of short strings (C strings of 1-7 characters with their NUL, so 1-8
// bytes, the shorter ones more common: lengths are geometric-ish, as in identifiers, tags
// and small counters). Builds `strings` of them, then churns: each round frees a random
// third and makes new ones in their place (every string verified before it is freed), and
// at the end frees them all. The table is one array of pointers and one of generations (9
// bytes per string, the same under every allocator), so peak RSS compares what the
// allocators spend on the strings.
//
// Arguments: threads (1), strings, rounds, seed.
#include "common.h"

/// 1-8 bytes with the NUL: half the strings 1-4 bytes, half 5-8 (within each half, uniform).
static size_t next_len(rng_t *r) {
    return (size_t)(rng_below(r, 2) == 0 ? rng_range(r, 1, 4) : rng_range(r, 5, 8));
}

static char *make(rng_t *r, uint64_t tag) {
    size_t n = next_len(r);
    char *s = (char *)xmalloc(n);
    for (size_t k = 0; k + 1 < n; k++) s[k] = (char)('a' + (tag >> (5 * k)) % 26);
    s[n - 1] = '\0';
    return s;
}

static void check(const char *s, uint64_t tag) {
    size_t n = strlen(s);
    if (n > 7) corruption("tiny-strings: string of %zu characters", n);
    for (size_t k = 0; k < n; k++)
        if (s[k] != (char)('a' + (tag >> (5 * k)) % 26)) corruption("tiny-strings: string %p overwritten", (void *)s);
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"threads", 1, "threads (one; the suite passes it to every workload)"},
        {"strings", 3000000, "strings kept live"},
        {"rounds", 6, "rounds replacing a random third"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("tiny-strings", argc, argv, args, nargs);
    long n = arg_get(args, nargs, "strings"), rounds = arg_get(args, nargs, "rounds");
    rng_t rng = rng_seeded((uint64_t)arg_get(args, nargs, "seed"), 1);
    if (n < 1 || rounds < 0) die("bad arguments");

    char **table = (char **)xmalloc(sizeof(char *) * (size_t)n);
    // String i's characters follow from (i, its generation).
    unsigned char *gen = (unsigned char *)calloc((size_t)n, 1);
    if (gen == NULL) die("out of memory");
#define TAG(i) mix((uint64_t)(i), gen[i])
    uint64_t checksum = 0;
    double t0 = now_seconds();
    for (long i = 0; i < n; i++) table[i] = make(&rng, TAG(i));
    for (long r = 0; r < rounds; r++) {
        for (long k = 0; k < n / 3; k++) {
            long i = (long)rng_below(&rng, (uint64_t)n);
            check(table[i], TAG(i));
            checksum = mix(checksum, (uint64_t)strlen(table[i]));
            free(table[i]);
            gen[i]++;
            table[i] = make(&rng, TAG(i));
        }
    }
    long peak = maxrss_kib();
    for (long i = 0; i < n; i++) {
        check(table[i], TAG(i));
        free(table[i]);
    }
    double elapsed = now_seconds() - t0;
    free(table);
    free(gen);
    printf("workload=tiny-strings strings=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n", n, elapsed,
           (unsigned long long)checksum, peak);
    return 0;
}
