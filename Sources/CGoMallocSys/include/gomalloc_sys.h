// gomalloc_sys.h — the operating-system layer under the GoMalloc core.
//
// Role: the only place the core reaches libc or the kernel. Embedded Swift has no
// Glibc module, so every system call, the thread-locals and the CPU id live here.
// Go counterpart: mem_linux.go, os_linux.go (sysReserve, sysMap, ...).
// Invariants:
//   I1. Nothing here allocates: no stdio, no malloc, no dlsym.
//   I2. Every call reports failure through its return value (NULL / -1); nothing traps.
// Concurrency: all functions are thread-safe; the thread-locals are per thread.
// Failure: mmap failure returns NULL; other calls return -1 and leave errno set.
#ifndef GOMALLOC_SYS_H
#define GOMALLOC_SYS_H

#include <stddef.h>
#include <stdint.h>

#define GM_NONISOLATED __attribute__((swift_attr("nonisolated(unsafe)")))

// MARK: - Memory (Go's sys* family; Sys.swift names them)

/// Reserve `size` bytes of address space, PROT_NONE, near `hint` (a hint only; never MAP_FIXED).
void *gm_sys_reserve(void *hint, size_t size);
/// Map `size` bytes read-write anywhere (metadata); NULL on failure.
void *gm_sys_map_anon(size_t size);
/// Make [addr, addr+size) of a reservation read-write. 0 on success.
int gm_sys_commit(void *addr, size_t size);
/// Give the physical pages back; the range stays mapped and reads as zero afterwards.
int gm_sys_release(void *addr, size_t size);
/// Unmap a range.
int gm_sys_unmap(void *addr, size_t size);
/// Move the pages of [from, from+size) to [to, to+size) without copying (mremap with
/// MREMAP_FIXED | MREMAP_DONTUNMAP): the source stays mapped and reads as zero afterwards.
/// 0 on success; -1 (e.g. a kernel older than 5.7) leaves both ranges unchanged.
int gm_sys_move_pages(void *from, void *to, size_t size);

static inline void gm_sys_memset(void *p, int c, size_t n) { __builtin_memset(p, c, n); }
static inline void gm_sys_memcpy(void *d, const void *s, size_t n) { __builtin_memcpy(d, s, n); }

// MARK: - Process

/// write(2) the whole buffer to `fd`, retrying on EINTR; never allocates.
void gm_sys_write(int fd, const void *buf, size_t len);
/// A close-on-exec duplicate of `fd` numbered 100 or above (out of programs' way); -1 on failure.
int gm_sys_dup_private(int fd);
_Noreturn void gm_sys_abort(void);
void gm_sys_set_errno(int e);
int gm_sys_errno(void);
/// glibc's getenv does not allocate; Options.swift is its only caller.
const char *gm_sys_getenv(const char *name);
/// CPUs this process may use: the affinity mask, capped by a cgroup CPU quota when one is set.
int gm_sys_ncpu(void);
void gm_sys_yield(void);
/// The CPU's spin-wait hint: `pause` on x86-64 (lets the sibling hyperthread run and avoids
/// the memory-order flush when the spin ends), `yield` on AArch64.
static inline void gm_sys_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}
/// CLOCK_MONOTONIC in nanoseconds (vDSO: no system call).
uint64_t gm_sys_nanotime(void);
long gm_sys_gettid(void);
int gm_sys_getpid(void);
/// Register fork handlers (prepare, parent, child). 0 on success.
int gm_sys_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
/// Register a function to run at process exit (GOMALLOC_STATS). 0 on success.
int gm_sys_atexit(void (*fn)(void));

// MARK: - Futex (the slow half of our mutex)

void gm_sys_futex_wait(uint32_t *addr, uint32_t expected);
void gm_sys_futex_wake(uint32_t *addr, int count);

// MARK: - Thread-locals and the current CPU

/// The P this thread prefers (index + 1; 0 = not chosen yet). Initial-exec TLS: one word.
extern __thread uintptr_t gm_tls_preferred_p __attribute__((tls_model("initial-exec"))) GM_NONISOLATED;

/// Debug builds only (GOMALLOC_INTERNAL_CHECKS): the lock ranks this thread holds, one bit
/// per rank (Lock.swift checks the order). Initial-exec TLS: one word.
extern __thread uintptr_t gm_tls_held_ranks __attribute__((tls_model("initial-exec"))) GM_NONISOLATED;

/// glibc 2.35+: where this thread's rseq area sits relative to the thread pointer.
extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

/// The CPU this thread is running on, from glibc's rseq area (~0.3 ns);
/// negative when rseq is not registered (kernel too old, or glibc.pthread.rseq=0).
static inline int gm_sys_rseq_cpu(void) {
    if (__rseq_size == 0) return -1;
    char *tp;
#if defined(__x86_64__)
    __asm__("mov %%fs:0, %0" : "=r"(tp));
#elif defined(__aarch64__)
    __asm__("mrs %0, tpidr_el0" : "=r"(tp));
#else
    return -1;
#endif
    // struct rseq { u32 cpu_id_start; u32 cpu_id; ... }: cpu_id is at offset 4.
    return *(volatile int32_t *)(tp + __rseq_offset + 4);
}

#endif
