// gomalloc.h — GoMalloc's own C API, beyond the standard allocation functions.
//
// libgomalloc.so replaces the C library's allocator: a program that links it (`-lgomalloc`,
// or `pkg-config --libs gomalloc`) or runs with it in LD_PRELOAD gets GoMalloc's malloc,
// free, calloc, realloc, reallocarray, posix_memalign, aligned_alloc, memalign, valloc,
// pvalloc, malloc_usable_size, free_sized, free_aligned_sized, mallinfo, mallinfo2,
// malloc_trim, malloc_stats, malloc_info and mallopt, with glibc 2.36's semantics. Those are
// declared by <stdlib.h> and <malloc.h> as usual; this header adds the C23 sized frees (which
// glibc 2.36 does not declare) and the functions that only GoMalloc has.
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
/// HeapIdle, HeapInuse, HeapReleased, Mallocs, Frees; byte figures are followed by their size
/// in KiB/MiB/GiB, as `HeapAlloc: 123456 (120.5 KiB)`), a line `mcaches: N`, and a table of
/// the per-size-class counts. This is the summary GOMALLOC_STATS=1 prints at exit. It does not allocate
/// and writes with write(2), so it does not interleave with buffered stdio: fflush first.
void gomalloc_stats_print(int fd);

/// GoMalloc's statistics as one JSON object (no newline), for machines: every figure of the
/// summary under Go's runtime.MemStats names ("HeapAlloc", "HeapSys", "HeapIdle",
/// "HeapInuse", "HeapReleased", "HeapObjects", "StackInuse", ..., "MetadataSys",
/// "ScavengerReleasedBytes", "Mallocs", "Frees", "Ps", "MCaches", "Arenas") and "BySize", an
/// array of {"Size", "Mallocs", "Frees", "NoscanMallocs", "NoscanFrees"}, one per size class
/// (the first, Size 0, counts large objects). Like snprintf: writes at most len - 1 bytes
/// and a terminating NUL into buf (nothing when len is 0; buf may then be NULL) and returns
/// the length of the whole text, NUL excluded, whether or not it fitted — call it with
/// (NULL, 0) for the size, then with a buffer of that size + 1. Does not allocate. This is
/// what GOMALLOC_STATS=json prints at exit.
size_t gomalloc_stats_json(char *buf, size_t len);

/// The version of the loaded library (GOMALLOC_VERSION_STRING of the build), a static
/// string that must not be freed. Comparing it with the macro tells a program whether the
/// library it runs with is the one it was compiled against.
const char *gomalloc_version(void);

/// Write the heap profile now to `path` (`%p` in it: the process id; created or truncated):
/// the sampled allocation sites with their allocated and still-in-use counts, then the
/// memory map, in the format `gomalloc profile` reads (Sources/GoMallocCore/Profile.swift).
/// Sampling must be on (GOMALLOC_PROFILE or GOMALLOC_PROFILE_RATE). Does not allocate.
/// 0 on success; -1 if sampling was never on or the file cannot be created.
int gomalloc_profile_dump(const char *path);

// MARK: Stacks
//
// Stacks for coroutines, fibers and green threads, from the same heap as malloc's blocks, as
// Go allocates goroutine stacks: sizes are powers of two from 2 KiB to 1 GiB; stacks of 2-16
// KiB come from 32 KiB spans through a per-CPU cache, larger ones are spans of their own,
// kept for reuse after a free (up to 16 MiB in all; malloc_trim returns them). A stack is
// aligned to its rounded size up to 8 KiB (GoMalloc's page). free(), realloc() and malloc_usable_size() of any address
// inside a stack are invalid pointers. Stacks grow down: the usable part of the stack at
// `lo` of rounded size `n` is [lo + gomalloc_stack_guard_size(n), lo + n), and a new
// coroutine's stack pointer starts at lo + n.

/// A stack of at least `size` bytes (rounded up to a power of two, at least 2048); returns
/// its lowest address. size 0: NULL with errno EINVAL; more than 1 GiB, or no memory: NULL
/// with errno ENOMEM.
void *gomalloc_stack_alloc(size_t size);

/// Free the stack at `lo`, which gomalloc_stack_alloc returned for the same `size` (or
/// gomalloc_stack_grow for twice the old rounded size). Anything else — an address that is
/// not a live stack's low address, a different size class, a second free — prints
/// `gomalloc: stack_free(): invalid stack 0x...` and aborts. gomalloc_stack_free(NULL, n)
/// does nothing.
void gomalloc_stack_free(void *lo, size_t size);

/// The memory side of Go's copystack: a new stack of twice the rounded `size`, the top
/// `used` bytes of the stack at `lo` copied to its top, and the old stack freed. Returns
/// the new stack's low address (free it with size 2 * rounded size); the caller moves its
/// own pointers into the stack by (new top - old top). NULL leaves the old stack as it was:
/// errno EINVAL if `used` exceeds the usable size, ENOMEM if there is no memory or the new
/// size would exceed 1 GiB. `lo` must be a live stack of `size` (else it aborts, as
/// gomalloc_stack_free does).
void *gomalloc_stack_grow(void *lo, size_t size, size_t used);

/// The bytes at the bottom of a stack of `size` that are inaccessible: one OS page for
/// stacks of 32 KiB or more when the program runs with GOMALLOC_STACK_GUARD=1, else 0.
size_t gomalloc_stack_guard_size(size_t size);

#ifdef __cplusplus
}
#endif

#endif // GOMALLOC_H
