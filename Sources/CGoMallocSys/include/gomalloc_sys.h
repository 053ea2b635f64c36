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
/// Map `size` bytes read-write anywhere without reserving swap for them (MAP_NORESERVE): for
/// large sparse tables whose untouched pages read as zero and cost nothing. NULL on failure.
void *gm_sys_map_sparse(size_t size);
/// Make [addr, addr+size) of a reservation read-write. 0 on success.
int gm_sys_commit(void *addr, size_t size);
/// Give the physical pages back; the range stays mapped and reads as zero afterwards.
int gm_sys_release(void *addr, size_t size);
/// Make [addr, addr + size) inaccessible (PROT_NONE: a stack's guard page). 0 or -1.
int gm_sys_protect_none(void *addr, size_t size);
/// The kernel's page size (sysconf(_SC_PAGESIZE)).
size_t gm_sys_os_page_size(void);
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
/// Create (or truncate) `path` for writing, mode 0644, close-on-exec; -1 on failure (GOMALLOC_HEAPMAP).
int gm_sys_create_file(const char *path);
void gm_sys_close(int fd);
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

// MARK: - Heap profiling (Profile.swift)

/// Walk the frame-pointer chain from the caller of this function: store up to `max` return
/// addresses in `pcs` (the innermost first) and return how many. Never allocates, takes no
/// lock and cannot fault: each frame must lie 16-byte aligned above the previous one and
/// within 1 MiB of it, and each stack page it reads is first proven readable with
/// process_vm_readv(2) on this process (one call per page; EFAULT ends the walk). The walk
/// stops at a zero return address, a broken chain, or `max`.
int gm_sys_backtrace_fp(uintptr_t *pcs, int max);
/// The same through glibc's backtrace(), i.e. libgcc's unwinder over the binaries' .eh_frame
/// tables: sees through code without frame pointers. Its first call loads libgcc_s (dlopen:
/// it allocates), so gm_sys_backtrace_prime must run once outside the allocator first; until
/// it has, this returns 0. After that glibc and libgcc (12) unwind without allocating, taking
/// the loader's dl_iterate_phdr lock (see DESIGN.md, "Heap profiling", for what can go wrong).
int gm_sys_backtrace_unwind(uintptr_t *pcs, int max);
/// Call backtrace() once (loads libgcc_s). Outside any allocator lock; may allocate. 1 if
/// the unwinder works (a non-empty trace), else 0.
int gm_sys_backtrace_prime(void);
/// Copy the file at `path` (e.g. /proc/self/maps) to `fd` through a stack buffer; 0 or -1.
int gm_sys_copy_file(const char *path, int fd);
/// Install `handler` for SIGUSR2 (SA_RESTART), unless the program has one already; 0 if
/// installed.
int gm_sys_sigusr2(void (*handler)(int));

// MARK: - Futex (the slow half of our mutex)

void gm_sys_futex_wait(uint32_t *addr, uint32_t expected);
void gm_sys_futex_wake(uint32_t *addr, int count);
/// Sleep while *addr == expected, at most `nanos` nanoseconds (or until woken).
void gm_sys_futex_wait_for(uint32_t *addr, uint32_t expected, uint64_t nanos);

// MARK: - The background scavenger's thread

/// Start a detached thread running fn(NULL) with every signal blocked (process-directed
/// signals go to the program's own threads) and a 256 KiB stack. 0 on success, else an
/// errno value. pthread_create may call malloc (glibc allocates the thread's DTV): call it
/// holding no allocator lock and no P.
int gm_sys_thread_start(void *(*fn)(void *));
/// Name the calling thread (at most 15 bytes; `top -H` and /proc/PID/task/TID/comm show it).
void gm_sys_thread_set_name(const char *name);

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

#define GM_STR_(x) #x
#define GM_STR(x) GM_STR_(x)

// MARK: - Ps bound to CPUs by a restartable sequence (Proc.swift)
//
// A thread takes the P of the CPU it runs on with plain loads and one plain store, inside an
// rseq critical section: if the kernel preempts, migrates or signals the thread between its
// read of the CPU id and the committing store, the store never happens and the section
// fails (the caller takes its slow path). Only threads on CPU k ever run the section for P k,
// and at most one of them is inside it at a time, so `owner: 0 -> 1` needs no locked
// instruction; giving the P back is a release store from wherever the thread is by then.
//
// The section admits a CPU id by one addition: gm_rseq_gate = blockers * 2^24 - ncpu, and
// cpu + gate < 0 exactly when no one blocks the CPU Ps and cpu < ncpu (the id is loaded
// zero-extended, so the kernel's negative "not registered" ids fail too). The sum also
// indexes the P from the end of the CPU Ps: slot = end + (cpu - ncpu) * 2^GM_PSLOT_SHIFT.
// With no CPU Ps (ncpu 0: no rseq, GOMALLOC_RSEQ=0, a child whose set-up failed) every
// section fails at once and the caller takes Ps by compare-and-swap.
// Anyone else who takes CPU Ps (stop the world, trim) first adds 2^24 to the gate and runs
// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ): every section in flight restarts and
// every later one sees the gate and fails, so compare-and-swaps on CPU Ps are safe until it
// is lowered again. One atomic addition changes both parts, so blockers nest.

/// log2 of the bytes between two Ps (Proc.swift's pSlotStride).
#define GM_PSLOT_SHIFT 12

/// blockers * 2^24 - ncpu (see above).
extern int64_t gm_rseq_gate __attribute__((visibility("hidden"))) GM_NONISOLATED;

/// 1 if this process can bind Ps to CPUs: glibc registered rseq for this thread (not under
/// valgrind, not with glibc.pthread.rseq=0, kernel 4.18+), the CPU id reads valid, and
/// membarrier's rseq flavour registers (Linux 5.10+). 0 otherwise.
int gm_sys_rseq_setup(void);

/// Open the gate for `ncpu` CPU Ps (at start-up, before the heap is published), or close it
/// for good (-ncpu: a forked child that binds Ps by compare-and-swap from now on).
void gm_sys_rseq_set_cpus(int ncpu);

/// CPU ids the system may use (sysconf(_SC_NPROCESSORS_CONF)): rseq-bound Ps are indexed by them.
int gm_sys_ncpu_configured(void);

/// Raise / lower the blockers count; raising returns once no critical section can commit
/// (1), or 0 if membarrier failed even after registering again (then nothing is safe).
int gm_sys_rseq_block(void);
/// In a forked child: the gate as `ncpu` CPUs with exactly `blocks` blocks held (other
/// threads' blocks, such as a trim in progress, do not exist in the child).
void gm_sys_rseq_reset_gate(int ncpu, int blocks);
void gm_sys_rseq_unblock(void);

/// Take the P of this CPU: the address end + (cpu - ncpu) * 2^GM_PSLOT_SHIFT, where `end` is
/// the address just past the CPU Ps, whose first 32-bit word (the owner) goes 0 -> 1; 0 if
/// the gate refuses the CPU id, the P is held, or the section was interrupted. Acquire
/// ordering (x86-64 loads; ldar on AArch64).
static inline uintptr_t gm_sys_rseq_take_p(uintptr_t end) {
    uintptr_t slot;
#if defined(__x86_64__)
    uintptr_t tmp;
    // The rseq area is at %fs:__rseq_offset: addressed through the segment, no thread
    // pointer load.
    ptrdiff_t off = __rseq_offset;
    __asm__ goto(
        ".pushsection __rseq_cs, \"aw\"\n\t"
        ".balign 32\n\t"
        "3:\n\t"
        ".long 0, 0\n\t"                    /* version, flags */
        ".quad 1f, 2f - 1f, 4f\n\t"         /* start_ip, post_commit_offset, abort_ip */
        ".popsection\n\t"
        "leaq 3b(%%rip), %[tmp]\n\t"
        "movq %[tmp], %%fs:8(%[off])\n\t"   /* rseq->rseq_cs = &descriptor */
        "1:\n\t"
        "movl %%fs:4(%[off]), %k[slot]\n\t" /* rseq->cpu_id, zero-extended */
        "addq %[gate], %[slot]\n\t"
        "jns %l[fail]\n\t"
        "shlq $" GM_STR(GM_PSLOT_SHIFT) ", %[slot]\n\t"
        "addq %[end], %[slot]\n\t"
        "cmpl $0, (%[slot])\n\t"
        "jne %l[fail]\n\t"
        "movl $1, (%[slot])\n\t"            /* commit */
        "2:\n\t"
        ".pushsection __rseq_failure, \"ax\"\n\t"
        ".byte 0x0f, 0xb9, 0x3d\n\t"        /* ud1 carrying the signature */
        ".long 0x53053053\n\t"              /* RSEQ_SIG, just before abort_ip */
        "4:\n\t"
        "jmp %l[fail]\n\t"
        ".popsection\n\t"
        : [slot] "=&r"(slot), [tmp] "=&r"(tmp)
        : [off] "r"(off), [gate] "m"(gm_rseq_gate), [end] "r"(end)
        : "memory", "cc"
        : fail);
    __builtin_assume(slot != 0);
    return slot;
#elif defined(__aarch64__)
    char *rs;
    uintptr_t tmp;
    __asm__("mrs %0, tpidr_el0" : "=r"(rs));
    rs += __rseq_offset;
    __asm__ goto(
        ".pushsection __rseq_cs, \"aw\"\n\t"
        ".balign 32\n\t"
        "3:\n\t"
        ".long 0, 0\n\t"
        ".quad 1f, 2f - 1f, 4f\n\t"
        ".popsection\n\t"
        "adrp %[slot], 3b\n\t"
        "add %[slot], %[slot], :lo12:3b\n\t"
        "str %[slot], [%[rs], #8]\n\t"      /* rseq->rseq_cs = &descriptor */
        "1:\n\t"
        "ldr %w[slot], [%[rs], #4]\n\t"     /* rseq->cpu_id, zero-extended */
        "ldr %[tmp], %[gate]\n\t"
        "adds %[slot], %[slot], %[tmp]\n\t"
        "b.pl %l[fail]\n\t"
        "add %[slot], %[end], %[slot], lsl #" GM_STR(GM_PSLOT_SHIFT) "\n\t"
        "ldar %w[tmp], [%[slot]]\n\t"
        "cbnz %w[tmp], %l[fail]\n\t"
        "mov %w[tmp], #1\n\t"
        "str %w[tmp], [%[slot]]\n\t"        /* commit */
        "2:\n\t"
        ".pushsection __rseq_failure, \"ax\"\n\t"
        ".long 0xd428bc00\n\t"              /* RSEQ_SIG on AArch64 (brk #0x45e0) */
        "4:\n\t"
        "b %l[fail]\n\t"
        ".popsection\n\t"
        : [slot] "=&r"(slot), [tmp] "=&r"(tmp)
        : [rs] "r"(rs), [gate] "Q"(gm_rseq_gate), [end] "r"(end)
        : "memory", "cc"
        : fail);
    __builtin_assume(slot != 0);
    return slot;
#else
    (void)end; (void)slot;
#endif
fail:
    return 0;
}

#endif
