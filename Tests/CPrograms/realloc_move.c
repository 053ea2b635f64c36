// realloc_move.c — realloc of a block of at least 32 MiB that cannot grow in place moves
// its pages with mremap (Malloc.swift reallocObject, MHeap.moveLarge) instead of copying.
//
// A 40 MiB block with a 1 MiB block right after it (1 MiB blocks are taken until one lands
// there: first fit fills any lower holes first) is reallocated to 80 MiB. Then:
//   * every byte of the old contents is there, the neighbour is untouched, and the new tail
//     is usable;
//   * malloc_usable_size is the new size rounded up to whole 8 KiB pages;
//   * the pages were moved, not copied: the old range went back to the OS with them, so the
//     free pages still resident (HeapIdle - HeapReleased, from gomalloc_stats_print) did not
//     grow (a copy frees the old pages resident: 40 MiB is within the scavenger's goal);
//   * the old range, obtained again through calloc (first fit gives it back: it is the
//     lowest free run that size), reads zero: its pages are known-zero and calloc does not
//     clear them, so stale contents there would show;
//   * the moved block, freed and obtained again through calloc, reads zero too.
// The placement and statistics checks need GoMalloc (GOMALLOC_TEST_EXPECT_GOMALLOC=1); the
// contents checks hold under any allocator. Prints `OK realloc_move`.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

enum { PAGE = 8192, FILLERS = 256 };

static size_t round_pages(size_t n) { return (n + PAGE - 1) / PAGE * PAGE; }

/// HeapIdle - HeapReleased from GoMalloc's statistics (gomalloc_stats_print, found with
/// dlsym: under another allocator it does not exist).
static size_t resident_free_bytes(void) {
    void (*print)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "gomalloc_stats_print");
    CHECK(print != NULL);
    int fds[2];
    CHECK(pipe(fds) == 0);
    print(fds[1]);  // a few KiB: fits the pipe
    close(fds[1]);
    static char text[65536];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof text - 1 && (k = read(fds[0], text + n, sizeof text - 1 - n)) > 0) n += (size_t)k;
    close(fds[0]);
    text[n] = 0;
    const char *idle = strstr(text, "\nHeapIdle: "), *released = strstr(text, "\nHeapReleased: ");
    CHECKF(idle && released, "no HeapIdle / HeapReleased in the statistics:\n%s", text);
    return strtoull(idle + strlen("\nHeapIdle: "), NULL, 10) - strtoull(released + strlen("\nHeapReleased: "), NULL, 10);
}

/// Index of the first byte of p[0, n) that is not zero, or n.
static size_t first_nonzero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0) return i;
    return n;
}

int main(void) {
    alarm(120);
    const char *expect = getenv("GOMALLOC_TEST_EXPECT_GOMALLOC");
    int gomalloc = expect && strcmp(expect, "1") == 0;
    const size_t old_size = (40u << 20) + 123;    // 5121 pages: over the 4096-page move threshold
    const size_t new_size = (80u << 20) + 4567;
    const size_t neighbour_size = 1u << 20;

    unsigned char *a = malloc(old_size);
    CHECK(a != NULL);
    size_t old_usable = malloc_usable_size(a);
    if (gomalloc) CHECKF(old_usable == round_pages(old_size), "usable size %zu of %zu bytes", old_usable, old_size);

    // The neighbour right after a.
    void *fillers[FILLERS];
    int nfillers = 0;
    unsigned char *b = NULL;
    if (gomalloc) {
        while (b == NULL && nfillers < FILLERS) {
            unsigned char *f = malloc(neighbour_size);
            CHECK(f != NULL);
            if (f == a + old_usable) b = f; else fillers[nfillers++] = f;
        }
        CHECKF(b != NULL, "no 1 MiB block landed right after %p (+%zu)", (void *)a, old_usable);
    } else {
        b = malloc(neighbour_size);
        CHECK(b != NULL);
    }
    fill_pattern(b, neighbour_size, 77);
    fill_pattern(a, old_size, 1234);

    // Addresses of blocks that are then reallocated or freed, kept as numbers.
    const uintptr_t old_addr = (uintptr_t)a;
    size_t resident_before = gomalloc ? resident_free_bytes() : 0;
    unsigned char *q = realloc(a, new_size);
    size_t resident_after = gomalloc ? resident_free_bytes() : 0;
    const uintptr_t moved_addr = (uintptr_t)q;
    CHECKF(q != NULL, "realloc(%p, %zu) failed", (void *)a, new_size);
    CHECKF(verify_pattern(q, old_size, 1234), "realloc(0x%zx, %zu) = %p lost contents", (size_t)old_addr, new_size, (void *)q);
    CHECK(verify_pattern(b, neighbour_size, 77));
    if (gomalloc) {
        CHECKF((uintptr_t)q != old_addr, "0x%zx grew in place though %p is right after it", (size_t)old_addr, (void *)b);
        CHECKF(malloc_usable_size(q) == round_pages(new_size), "usable size %zu after realloc to %zu",
               malloc_usable_size(q), new_size);
        CHECKF(resident_after <= resident_before,
               "free pages still resident went from %zu to %zu bytes: the old %zu bytes were copied and freed, "
               "not moved (mremap with MREMAP_DONTUNMAP needs Linux 5.7)", resident_before, resident_after, old_usable);
    } else {
        CHECK(malloc_usable_size(q) >= new_size);
    }
    // The new tail is usable, and writing it leaves the moved part alone.
    fill_pattern(q + old_size, new_size - old_size, 999);
    CHECK(verify_pattern(q + old_size, new_size - old_size, 999));
    CHECK(verify_pattern(q, old_size, 1234));

    // The old range again, through calloc: zero.
    unsigned char *c = calloc(1, old_size);
    CHECK(c != NULL);
    if (gomalloc) CHECKF((uintptr_t)c == old_addr, "calloc(1, %zu) = %p, not the old range 0x%zx", old_size, (void *)c, (size_t)old_addr);
    size_t bad = first_nonzero(c, old_size);
    CHECKF(bad == old_size, "calloc(1, %zu) = %p: byte %zu is 0x%02x", old_size, (void *)c, bad, c[bad]);

    // The moved block, freed (its pages are resident and dirty), through calloc: zero.
    free(q);
    unsigned char *d = calloc(1, new_size);
    CHECK(d != NULL);
    if (gomalloc) CHECKF((uintptr_t)d == moved_addr, "calloc(1, %zu) = %p, not the freed block 0x%zx", new_size, (void *)d, (size_t)moved_addr);
    bad = first_nonzero(d, new_size);
    CHECKF(bad == new_size, "calloc(1, %zu) = %p: byte %zu is 0x%02x", new_size, (void *)d, bad, d[bad]);

    free(d);
    free(c);
    CHECK(verify_pattern(b, neighbour_size, 77));
    free(b);
    for (int i = 0; i < nfillers; i++) free(fillers[i]);
    printf("OK realloc_move\n");
    return 0;
}
