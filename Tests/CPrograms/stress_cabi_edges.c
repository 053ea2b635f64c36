// stress_cabi_edges.c — corners of the C allocation API where glibc 2.36's answers are easy
// to get wrong: errno after the first (set-up) malloc, size_t (unsigned) arithmetic,
// zero-sized products of huge counts, alignments of 2^63 and thereabouts, mallopt's answers.
//
// Usage: stress_cabi_edges. Passes under glibc 2.36 too (that is the reference); with
// GOMALLOC_TEST_EXPECT_GOMALLOC=1 it also checks, through mallinfo2, that reallocarray with
// a zero-sized product frees the old block as realloc(p, 0) does. Prints `OK
// stress_cabi_edges` last on success; a failed check prints FAIL and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <string.h>

#include "check.h"

#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="

static size_t in_use(void) {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

int main(void) {
    // The first allocation sets the allocator up (GoMalloc reads options and probes the CPU
    // quota: files that may not exist). Nothing has allocated yet: stdio has not been used.
    errno = 0;
    void *first = malloc(opaque(16));
    CHECKF(first != NULL && errno == 0, "the first malloc = %p, errno %d (a successful malloc keeps errno)", first, errno);
    free(first);

    const int gomalloc = getenv("GOMALLOC_TEST_EXPECT_GOMALLOC") && strcmp(getenv("GOMALLOC_TEST_EXPECT_GOMALLOC"), "1") == 0;

    // calloc: the product is computed in size_t; zero elements of any size is zero bytes.
    errno = 0;
    void *p = calloc(opaque(0), opaque(SIZE_MAX));
    CHECKF(p != NULL && errno == 0, "calloc(0, SIZE_MAX) = %p errno %d", p, errno);
    free(p);
    p = calloc(opaque(SIZE_MAX), opaque(0));
    CHECKF(p != NULL && errno == 0, "calloc(SIZE_MAX, 0) = %p errno %d", p, errno);
    free(p);
    p = calloc(opaque(SIZE_MAX / 2 + 1), opaque(2));
    CHECKF(p == NULL && errno == ENOMEM, "calloc(SIZE_MAX/2 + 1, 2) = %p errno %d", p, errno);
    errno = 0;
    p = calloc(opaque((size_t)1 << 32), opaque((size_t)1 << 31));  // 2^63: no overflow, too big
    CHECKF(p == NULL && errno == ENOMEM, "calloc(2^32, 2^31) = %p errno %d", p, errno);

    // reallocarray: a zero product is realloc(p, 0) (frees p, returns NULL) or malloc(0).
    errno = 0;
    p = reallocarray(NULL, opaque(0), opaque(SIZE_MAX));
    CHECKF(p != NULL && errno == 0, "reallocarray(NULL, 0, SIZE_MAX) = %p errno %d", p, errno);
    free(p);
    for (int k = 0; k < 2; k++) {
        size_t before = in_use();
        char *q = malloc(opaque(100000));
        CHECK(q != NULL);
        memset(q, 1, 100000);
        errno = 0;
        void *r = k == 0 ? reallocarray(q, opaque(0), opaque(SIZE_MAX)) : reallocarray(q, opaque(SIZE_MAX), opaque(0));
        CHECKF(r == NULL && errno == 0, "reallocarray(p, %s) = %p errno %d", k ? "SIZE_MAX, 0" : "0, SIZE_MAX", r, errno);
        if (gomalloc) CHECKF(in_use() == before, "reallocarray(p, 0 * n) did not free p: in use %zu -> %zu", before, in_use());
    }

    // The aligned family near 2^63: glibc refuses alignments above SIZE_MAX/2 + 1 with
    // EINVAL; 2^63 itself, and others that round up to it, are valid but impossible: ENOMEM.
    errno = 0;
    p = memalign(opaque((size_t)1 << 63), opaque(1));
    CHECKF(p == NULL && errno == ENOMEM, "memalign(2^63, 1) = %p errno %d", p, errno);
    errno = 0;
    p = memalign(opaque(((size_t)1 << 62) + 1), opaque(1));
    CHECKF(p == NULL && errno == ENOMEM, "memalign(2^62 + 1, 1) = %p errno %d", p, errno);
    errno = 0;
    p = memalign(opaque(SIZE_MAX), opaque(1));
    CHECKF(p == NULL && errno == EINVAL, "memalign(SIZE_MAX, 1) = %p errno %d", p, errno);
    errno = 0;
    p = aligned_alloc(opaque((size_t)1 << 63), opaque(1));
    CHECKF(p == NULL && errno == ENOMEM, "aligned_alloc(2^63, 1) = %p errno %d", p, errno);
    void *out = (void *)&p;
    int rc = posix_memalign(&out, opaque((size_t)1 << 63), opaque(1));
    CHECKF(rc == ENOMEM && out == (void *)&p, "posix_memalign(2^63, 1) = %d", rc);
    rc = posix_memalign(&out, opaque(((size_t)1 << 63) + 8), opaque(1));
    CHECKF(rc == EINVAL && out == (void *)&p, "posix_memalign(2^63 + 8, 1) = %d", rc);

    // mallopt: 1 for every parameter (known or not), except fastbins above 160 bytes.
    CHECKF(mallopt(9999, 1) == 1, "mallopt(unknown parameter) = %d", mallopt(9999, 1));
    CHECKF(mallopt(M_MXFAST, 1000) == 0, "mallopt(M_MXFAST, 1000) = %d", mallopt(M_MXFAST, 1000));
    CHECKF(mallopt(M_MXFAST, 64) == 1, "mallopt(M_MXFAST, 64) = %d", mallopt(M_MXFAST, 64));
    CHECKF(mallopt(M_ARENA_MAX, 0) == 1, "mallopt(M_ARENA_MAX, 0) = %d", mallopt(M_ARENA_MAX, 0));

    printf("OK stress_cabi_edges\n");
    return 0;
}
