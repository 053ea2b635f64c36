// misuse.c — bad pointers handed to free and realloc, on purpose.
//
// Usage: misuse MODE, with MODE one of
//   free-stack       free() of a stack address
//   free-global      free() of a static variable
//   free-mmap        free() of a page from mmap
//   double-free      free() twice of a small block (others allocated around it)
//   double-free-large  free() twice of a large block (its own span)
//   free-interior    free() of a pointer 16 bytes into a live block
//   free-inner-page  free() of an inner page of a live large block, a page where another
//                    large block started before it was freed (its tombstone is still there)
//   realloc-stack    realloc() of a stack address
// Before the bad call the program prints `addr 0x...` (the pointer it will pass, as %p) on
// stdout and flushes. GoMalloc must then abort (SIGABRT) after writing exactly one line to
// stderr: `gomalloc: free(): invalid pointer 0x...`, `gomalloc: free(): double free 0x...`
// or `gomalloc: realloc(): invalid pointer 0x...`. If the program returns instead, the bad
// call went unnoticed and it exits 3. (glibc aborts on most of these too, with its own
// messages; these programs are only meaningful under GoMalloc.)
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>

#include "check.h"

// The compiler sees the misuse too; these warnings are the point of the program.
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wuse-after-free"

static char global_buffer[64];

static void announce(const void *p) {
    printf("addr %p\n", p);
    fflush(stdout);
}

int main(int argc, char **argv) {
    CHECKF(argc == 2, "usage: misuse MODE");
    const char *mode = argv[1];
    // Some ordinary heap activity first, so the allocator is initialised and has spans.
    void *warm[32];
    for (int i = 0; i < 32; i++) warm[i] = malloc(16 + (size_t)i * 24);
    for (int i = 0; i < 32; i += 2) free(warm[i]);

    char stack_buffer[64];
    memset(stack_buffer, 1, sizeof stack_buffer);
    escape(stack_buffer);
    if (strcmp(mode, "free-stack") == 0) {
        void *p = stack_buffer + 16;
        escape(p);
        announce(p);
        free(p);
    } else if (strcmp(mode, "free-global") == 0) {
        void *p = global_buffer;
        escape(p);
        announce(p);
        free(p);
    } else if (strcmp(mode, "free-mmap") == 0) {
        void *p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(p != MAP_FAILED);
        memset(p, 0, 1 << 16);
        p = (char *)p + 4096;
        announce(p);
        free(p);
    } else if (strcmp(mode, "double-free") == 0) {
        void *before = malloc(opaque(48));
        void *p = malloc(opaque(48));
        void *after = malloc(opaque(48));
        CHECK(before != NULL && p != NULL && after != NULL);
        escape(before);
        escape(after);
        announce(p);
        free(p);
        escape(p);
        free(p);
    } else if (strcmp(mode, "double-free-large") == 0) {
        void *p = malloc(opaque(200000));
        CHECK(p != NULL);
        memset(p, 7, 200000);
        announce(p);
        free(p);
        escape(p);
        free(p);
    } else if (strcmp(mode, "free-interior") == 0) {
        char *block = malloc(opaque(64));
        CHECK(block != NULL);
        void *p = block + 16;
        escape(p);
        announce(p);
        free(p);
    } else if (strcmp(mode, "free-inner-page") == 0) {
        // Two 13-page blocks in a row, freed; a 26-page block then starts where the first did
        // and covers the page where the second started.
        char *a = malloc(opaque(100000));
        char *b = malloc(opaque(100000));
        CHECKF(b == a + 13 * 8192, "blocks not adjacent: %p %p", (void *)a, (void *)b);
        free(b);
        free(a);
        char *c = malloc(opaque(26 * 8192));
        CHECKF(c == a, "the large block did not reuse the pages: %p %p", (void *)c, (void *)a);
        memset(c, 1, 26 * 8192);
        announce(b);
        free(b);
    } else if (strcmp(mode, "realloc-stack") == 0) {
        void *p = stack_buffer + 16;
        escape(p);
        announce(p);
        void *q = realloc(p, opaque(200));
        escape(q);
    } else {
        CHECKF(0, "unknown mode %s", mode);
    }
    fprintf(stderr, "misuse %s: the bad call returned\n", mode);
    return 3;
}
