// sizeclasses.c — malloc of every small size lands in the smallest size class that fits,
// with C's alignment rule.
//
// Usage: sizeclasses CLASS_SIZE... (the object sizes of classes 1, 2, ..., ascending)
//
// For every size 0...32768: malloc twice (the second call finds this thread's P and a
// span with free objects: the fast path's lookup table, CABI.swift) and calloc once (the
// general path's lookup, Malloc.swift); each block must be aligned as C promises and, under
// GoMalloc (GOMALLOC_TEST_EXPECT_GOMALLOC=1), malloc_usable_size must be the smallest class
// size >= the request (0 counts as 1) that is, for requests over 8 bytes, a multiple of 16
// (17...24 bytes get the 32-byte class). Under another allocator only usable >= size is
// checked. Prints `OK sizeclasses`.
//
// A wrong class in the fast path's table shows here when that class has a span in this
// thread's cache (the fast path then hands out its object); when it has none, the fast path
// misses and the general path answers correctly. SizeClassTests checks the table itself.
#define _GNU_SOURCE
#include <malloc.h>
#include <string.h>

#include "check.h"

enum { MAX_CLASSES = 128, MAX_SMALL = 32768 };

int main(int argc, char **argv) {
    size_t classes[MAX_CLASSES];
    int n = argc - 1;
    CHECKF(n >= 2 && n <= MAX_CLASSES, "usage: sizeclasses CLASS_SIZE...");
    for (int i = 0; i < n; i++) {
        classes[i] = strtoul(argv[i + 1], NULL, 10);
        CHECK(i == 0 || classes[i] > classes[i - 1]);
    }
    CHECKF(classes[n - 1] == MAX_SMALL, "the largest class is %zu", classes[n - 1]);
    const char *expect = getenv("GOMALLOC_TEST_EXPECT_GOMALLOC");
    int gomalloc = expect && strcmp(expect, "1") == 0;

    for (size_t size = 0; size <= MAX_SMALL; size++) {
        size_t want = 0;
        for (int i = 0; i < n && want == 0; i++)
            if (classes[i] >= (size ? size : 1) && (size <= 8 || classes[i] % 16 == 0)) want = classes[i];
        // With GOMALLOC_TINY=1, 0-4 bytes are packed by the tiny allocator: their usable size
        // is their own rounded size (1, 1, 2, 4, 4), not a class's.
        const char *tiny = getenv("GOMALLOC_TINY");
        if (size <= 4 && tiny && strcmp(tiny, "1") == 0) want = size <= 1 ? 1 : size == 3 ? 4 : size;
        CHECKF(want != 0, "no class for %zu bytes", size);
        void *p[3];
        p[0] = malloc(opaque(size));
        p[1] = malloc(opaque(size));
        p[2] = calloc(1, opaque(size));
        for (int k = 0; k < 3; k++) {
            const char *how = k == 2 ? "calloc" : "malloc";
            CHECKF(p[k] != NULL, "%s(%zu) failed", how, size);
            CHECKF(is_aligned(p[k], promised_alignment(size)), "%s(%zu) = %p: not aligned to %zu", how, size, p[k],
                   (size_t)promised_alignment(size));
            size_t usable = malloc_usable_size(p[k]);
            if (gomalloc)
                CHECKF(usable == want, "%s(%zu): usable size %zu, want the %zu-byte class", how, size, usable, want);
            else
                CHECKF(usable >= size, "%s(%zu): usable size %zu", how, size, usable);
            memset(p[k], 0xA5, size);
        }
        for (int k = 0; k < 3; k++) free(p[k]);
    }
    printf("OK sizeclasses\n");
    return 0;
}
