// sys.c — system calls for the GoMalloc core. See gomalloc_sys.h for the contract.
#define _GNU_SOURCE
#include "gomalloc_sys.h"

#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

__thread uintptr_t gm_tls_preferred_p __attribute__((tls_model("initial-exec"))) = 0;
__thread uintptr_t gm_tls_held_ranks __attribute__((tls_model("initial-exec"))) = 0;

void *gm_sys_reserve(void *hint, size_t size) {
    void *p = mmap(hint, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *gm_sys_map_anon(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *gm_sys_map_sparse(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int gm_sys_commit(void *addr, size_t size) { return mprotect(addr, size, PROT_READ | PROT_WRITE); }

int gm_sys_release(void *addr, size_t size) { return madvise(addr, size, MADV_DONTNEED); }

int gm_sys_protect_none(void *addr, size_t size) { return mprotect(addr, size, PROT_NONE); }

size_t gm_sys_os_page_size(void) {
    long n = sysconf(_SC_PAGESIZE);
    return n > 0 ? (size_t)n : 4096;
}

int gm_sys_unmap(void *addr, size_t size) { return munmap(addr, size); }

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

int gm_sys_move_pages(void *from, void *to, size_t size) {
    void *p = mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, to);
    return p == to ? 0 : -1;
}

void gm_sys_write(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

int gm_sys_dup_private(int fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 100); }

int gm_sys_create_file(const char *path) {
    int fd;
    do { fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644); } while (fd < 0 && errno == EINTR);
    return fd;
}

void gm_sys_close(int fd) { close(fd); }

_Noreturn void gm_sys_abort(void) { abort(); }
void gm_sys_set_errno(int e) { errno = e; }
int gm_sys_errno(void) { return errno; }
// Early in process start-up (glibc's __libc_early_init, ld.so's own allocations) malloc can
// run before libc has set `environ`; then read the kernel's copy from /proc/self/environ
// into a static buffer (no allocation). Later calls use getenv, which does not allocate.
extern char **environ;
static char early_env[32768];
static size_t early_env_len;
static int early_env_read;

const char *gm_sys_getenv(const char *name) {
    if (environ != NULL) return getenv(name);
    if (!early_env_read) {
        early_env_read = 1;
        int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n;
            while (early_env_len < sizeof early_env - 1 &&
                   (n = read(fd, early_env + early_env_len, sizeof early_env - 1 - early_env_len)) > 0)
                early_env_len += (size_t)n;
            close(fd);
        }
        early_env[early_env_len] = 0;
    }
    size_t nl = strlen(name);
    for (size_t i = 0; i < early_env_len;) {
        const char *entry = early_env + i;
        size_t el = strlen(entry);
        if (el > nl && memcmp(entry, name, nl) == 0 && entry[nl] == '=') return entry + nl + 1;
        i += el + 1;
    }
    return NULL;
}
void gm_sys_yield(void) { sched_yield(); }

uint64_t gm_sys_nanotime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
long gm_sys_gettid(void) { return syscall(SYS_gettid); }
int gm_sys_getpid(void) { return (int)getpid(); }

int gm_sys_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
    return pthread_atfork(prepare, parent, child);
}

int gm_sys_atexit(void (*fn)(void)) { return atexit(fn); }

// MARK: - Heap profiling

/// Whether the 8 bytes at `addr` can be read: process_vm_readv reports EFAULT instead of
/// faulting.
static int gm_readable(uintptr_t addr) {
    uintptr_t word;
    struct iovec local = {&word, sizeof word}, remote = {(void *)addr, sizeof word};
    return syscall(SYS_process_vm_readv, (long)getpid(), &local, 1L, &remote, 1L, 0L) == (long)sizeof word;
}

__attribute__((noinline)) int gm_sys_backtrace_fp(uintptr_t *pcs, int max) {
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    uintptr_t page = (uintptr_t)&fp & ~(uintptr_t)4095;  // this frame's page: readable
    uintptr_t lastPage = page;
    int n = 0;
    while (n < max) {
        if (fp == 0 || (fp & 15) != 0) break;
        uintptr_t p = fp & ~(uintptr_t)4095;
        if (p != lastPage) {
            if (!gm_readable(fp)) break;
            lastPage = p;
        }
        uintptr_t next = ((uintptr_t *)fp)[0];
        uintptr_t pc = ((uintptr_t *)fp)[1];
        if (pc == 0) break;
        pcs[n++] = pc;
        if (next <= fp || next - fp > ((uintptr_t)1 << 20)) break;
        fp = next;
    }
    return n;
}

// The unwinder cannot walk the core's own frames: Swift emits no .eh_frame entries for
// them (its functions are nounwind; their CFI goes to .debug_frame only). So the walk is in
// two parts: frame pointers out of this module's code (the core keeps them), to the first
// frame F whose return address lies outside it; then glibc's backtrace() called through
// gm_unwind_from, whose CFI states that its caller's frame is F's caller: CFA = F + 16, the
// return address at F + 8, the caller's rbp at F. libgcc's unwinder thus resumes in the
// program's code, at the call to malloc, and goes on with the program's own unwind tables.
static int gm_unwinder_primed = 0;
/// This module's executable segment, [lo, hi) (found when priming).
static uintptr_t gm_text_lo, gm_text_hi;

#if defined(__x86_64__)
__attribute__((visibility("hidden"))) int gm_unwind_from(uintptr_t *pcs, int max, uintptr_t frame);
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".hidden gm_unwind_from\n"
    ".globl gm_unwind_from\n"
    ".type gm_unwind_from,@function\n"
    "gm_unwind_from:\n"
    ".cfi_startproc\n"
    "pushq %rbx\n"
    "movq %rdx, %rbx\n"
    ".cfi_def_cfa %rbx, 16\n"   /* the caller's frame is F's caller's */
    ".cfi_offset %rbp, -16\n"   /* its rbp is saved at F */
    "call backtrace@PLT\n"      /* rdi = pcs, esi = max; rsp is 16-byte aligned here */
    "popq %rbx\n"
    "ret\n"
    ".cfi_endproc\n"
    ".size gm_unwind_from, .-gm_unwind_from\n");
#endif

static int gm_find_text(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    uintptr_t me = (uintptr_t)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (me >= lo && me < hi) { gm_text_lo = lo; gm_text_hi = hi; return 1; }
    }
    return 0;
}

int gm_sys_backtrace_prime(void) {
    void *pcs[4];
    int n = backtrace(pcs, 4);
    dl_iterate_phdr(gm_find_text, (void *)(uintptr_t)&gm_sys_backtrace_prime);
    int ok = n > 0 && gm_text_hi != 0;
    __atomic_store_n(&gm_unwinder_primed, ok, __ATOMIC_RELEASE);
    return ok;
}

__attribute__((noinline)) int gm_sys_backtrace_unwind(uintptr_t *pcs, int max) {
    if (!__atomic_load_n(&gm_unwinder_primed, __ATOMIC_ACQUIRE)) return 0;
#if defined(__x86_64__)
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    uintptr_t lastPage = (uintptr_t)&fp & ~(uintptr_t)4095;
    int n = 0;
    // Our own frames, by frame pointer, as gm_sys_backtrace_fp walks them.
    for (;;) {
        if (n >= max || fp == 0 || (fp & 15) != 0) return n;
        uintptr_t p = fp & ~(uintptr_t)4095;
        if (p != lastPage) {
            if (!gm_readable(fp)) return n;
            lastPage = p;
        }
        uintptr_t pc = ((uintptr_t *)fp)[1];
        if (pc == 0) return n;
        if (pc < gm_text_lo || pc >= gm_text_hi) break;  // fp is F
        pcs[n++] = pc;
        uintptr_t next = ((uintptr_t *)fp)[0];
        if (next <= fp || next - fp > ((uintptr_t)1 << 20)) return n;
        fp = next;
    }
    uintptr_t more[64];
    int room = max - n + 1 < 64 ? max - n + 1 : 64;  // + the entry inside gm_unwind_from
    int m = gm_unwind_from(more, room, fp);
    for (int i = 0; i < m && n < max; i++) {
        if (more[i] >= gm_text_lo && more[i] < gm_text_hi) continue;
        pcs[n++] = more[i];
    }
    return n;
#else
    return backtrace((void **)pcs, max);
#endif
}

int gm_sys_copy_file(const char *path, int fd) {
    int in;
    do { in = open(path, O_RDONLY | O_CLOEXEC); } while (in < 0 && errno == EINTR);
    if (in < 0) return -1;
    char buf[4096];
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        gm_sys_write(fd, buf, (size_t)r);
    }
    close(in);
    return 0;
}

int gm_sys_sigusr2(void (*handler)(int)) {
    struct sigaction old;
    if (sigaction(SIGUSR2, NULL, &old) != 0) return -1;
    if (old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGUSR2, &sa, NULL);
}

void gm_sys_futex_wait(uint32_t *addr, uint32_t expected) {
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

void gm_sys_futex_wake(uint32_t *addr, int count) {
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

void gm_sys_futex_wait_for(uint32_t *addr, uint32_t expected, uint64_t nanos) {
    struct timespec ts = {(time_t)(nanos / 1000000000u), (long)(nanos % 1000000000u)};
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, &ts, NULL, 0);
}

int gm_sys_thread_start(void *(*fn)(void *)) {
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return EAGAIN;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);  // the new thread inherits the mask
    pthread_t thread;
    int r = pthread_create(&thread, &attr, fn, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return r;
}

void gm_sys_thread_set_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

// MARK: - CPU count

// Read a small file into buf (NUL-terminated) with open/read: no stdio, no allocation.
static int read_small_file(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    return (int)n;
}

static long parse_long(const char **s) {
    long v = 0;
    int any = 0;
    while (**s >= '0' && **s <= '9') { v = v * 10 + (**s - '0'); (*s)++; any = 1; }
    return any ? v : -1;
}

// cgroup v2 `cpu.max` is "max PERIOD" or "QUOTA PERIOD"; v1 splits them over two files.
// Returns the quota in CPUs rounded up, or 0 when there is no limit.
static int cgroup_cpu_limit(void) {
    char buf[512], path[640];
    // Find our cgroup v2 path from /proc/self/cgroup ("0::/some/path").
    const char *rel = "";
    if (read_small_file("/proc/self/cgroup", buf, sizeof buf) > 0) {
        char *line = strstr(buf, "0::");
        if (line) {
            rel = line + 3;
            char *nl = strchr(rel, '\n');
            if (nl) *nl = 0;
        }
    }
    const char *candidates[2] = {rel, ""};
    for (int i = 0; i < 2; i++) {
        size_t rl = strlen(candidates[i]);
        if (rl + 40 > sizeof path) continue;
        memcpy(path, "/sys/fs/cgroup", 14);
        memcpy(path + 14, candidates[i], rl);
        memcpy(path + 14 + rl, "/cpu.max", 9);
        char v[128];
        if (read_small_file(path, v, sizeof v) > 0) {
            if (strncmp(v, "max", 3) == 0) return 0;
            const char *s = v;
            long quota = parse_long(&s);
            while (*s == ' ') s++;
            long period = parse_long(&s);
            if (quota > 0 && period > 0) return (int)((quota + period - 1) / period);
            return 0;
        }
    }
    char q[64], p[64];
    if (read_small_file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", q, sizeof q) > 0 &&
        read_small_file("/sys/fs/cgroup/cpu/cpu.cfs_period_us", p, sizeof p) > 0) {
        const char *qs = q, *ps = p;
        if (*qs == '-') return 0;
        long quota = parse_long(&qs), period = parse_long(&ps);
        if (quota > 0 && period > 0) return (int)((quota + period - 1) / period);
    }
    return 0;
}

int gm_sys_ncpu(void) {
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    int limit = cgroup_cpu_limit();
    if (limit > 0 && limit < n) n = limit;
    return n;
}

// MARK: - rseq P binding (see gomalloc_sys.h)

int64_t gm_rseq_gate;

#ifndef MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ
#define MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ (1 << 7)
#define MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ (1 << 8)
#endif

int gm_sys_ncpu_configured(void) {
    long c = sysconf(_SC_NPROCESSORS_CONF);
    return c > 0 ? (int)c : 1;
}

int gm_sys_rseq_setup(void) {
#if defined(__x86_64__) || defined(__aarch64__)
    // struct rseq up to its flags word: cpu_id_start, cpu_id, rseq_cs, flags.
    if (__rseq_size < 20) return 0;
    if (gm_sys_rseq_cpu() < 0) return 0;
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0) return 0;
    return 1;
#else
    return 0;
#endif
}

void gm_sys_rseq_set_cpus(int ncpu) {
    __atomic_fetch_sub(&gm_rseq_gate, (int64_t)ncpu, __ATOMIC_SEQ_CST);
}

int gm_sys_rseq_block(void) {
    __atomic_fetch_add(&gm_rseq_gate, (int64_t)1 << 24, __ATOMIC_SEQ_CST);
    // Restart every critical section in flight on every CPU running one of our threads, and
    // order the increment before any section that starts afterwards. Registered at set-up
    // and again in a forked child; should the kernel have forgotten, register and retry.
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0) return 1;
    syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0);
    return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0;
}

void gm_sys_rseq_unblock(void) {
    __atomic_fetch_sub(&gm_rseq_gate, (int64_t)1 << 24, __ATOMIC_RELEASE);
}

void gm_sys_rseq_reset_gate(int ncpu, int blocks) {
    __atomic_store_n(&gm_rseq_gate, ((int64_t)blocks << 24) - (int64_t)ncpu, __ATOMIC_SEQ_CST);
}
