// gomalloc.h — GoMalloc's own C API, beyond the standard allocation functions.
//
// libgomalloc.so replaces the C library's allocator: a program that links it (`-lgomalloc`,
// or `pkg-config --libs gomalloc`) or runs with it in LD_PRELOAD gets GoMalloc's malloc,
// free, calloc, realloc, reallocarray, posix_memalign, aligned_alloc, memalign, valloc,
// pvalloc, malloc_usable_size, free_sized, free_aligned_sized, mallinfo, mallinfo2,
// malloc_trim, malloc_stats and mallopt, with glibc 2.36's semantics. Those are declared by
// <stdlib.h> and <malloc.h> as usual; this header adds the C23 sized frees (which glibc 2.36
// does not declare) and the functions that only GoMalloc has.
//
// Every function here is thread-safe and async-signal-unsafe, like malloc itself.
// Installed by `gomalloc install` as <prefix>/include/gomalloc.h.
#ifndef GOMALLOC_H
#define GOMALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The library's version, as a string literal ("MAJOR.MINOR.PATCH").
#define GOMALLOC_VERSION_STRING "0.1.0"
#define GOMALLOC_VERSION_MAJOR 0
#define GOMALLOC_VERSION_MINOR 1
#define GOMALLOC_VERSION_PATCH 0

/// C23: free `p`, which the caller allocated with malloc, calloc or realloc asking for
/// exactly `size` bytes (for calloc, n * size). Passing the size lets the allocator skip a
/// lookup; a size that does not match the block is a caller bug. free_sized(NULL, n) does
/// nothing.
void free_sized(void *p, size_t size);

/// C23: free `p`, which the caller allocated with aligned_alloc(alignment, size) (or
/// posix_memalign/memalign with the same alignment and size). free_aligned_sized(NULL, ...)
/// does nothing.
void free_aligned_sized(void *p, size_t alignment, size_t size);

/// Write GoMalloc's statistics summary to the file descriptor `fd` (1 for stdout, 2 for
/// stderr): one line per figure with Go's runtime.MemStats names (HeapAlloc, HeapSys,
/// HeapIdle, HeapInuse, HeapReleased, Mallocs, Frees), the per-size-class counts, and a line
/// `mcaches: N`. This is the summary GOMALLOC_STATS=1 prints at exit. It does not allocate
/// and writes with write(2), so it does not interleave with buffered stdio: fflush first.
void gomalloc_stats_print(int fd);

/// The version of the loaded library (GOMALLOC_VERSION_STRING of the build), a static
/// string that must not be freed. Comparing it with the macro tells a program whether the
/// library it runs with is the one it was compiled against.
const char *gomalloc_version(void);

#ifdef __cplusplus
}
#endif

#endif // GOMALLOC_H
