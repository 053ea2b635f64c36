// MallocInit.swift — the heap root and its one-time initialisation (Go's mallocinit).
//
// Role: the heap is created by the first allocation (or the first call that needs it),
//   in memory of its own from mmap, and published through one atomic word that every
//   entry point reads. Initialisation reads the options (GOMALLOC_*), sets the number of Ps,
//   and installs the fork handlers and the at-exit statistics.
// Go counterpart: malloc.go (mallocinit), proc.go (schedinit: procresize).
// Invariants:
//   I1. heapRootWord is 0 or the address of a fully initialised MHeap; it changes once.
//   I2. heapInitLock is held (1) only by a thread initialising the heap or forking; the fork
//       handlers exist before any thread takes it for initialisation (Proc.swift), so a child
//       never inherits it held.
// Concurrency: heapRootWord: release store once, acquire loads. heapInitLock: CAS acquire,
//   store release; waiters yield.
// Failure: initialisation returns nil when the OS refuses memory; a later call tries again.
import CGoMallocSys
import Synchronization

/// The heap, published once (release) after initialisation. Atomic: acquire loads.
let heapRootWord = Atomic<UInt>(0)
/// Serialises initialisation and fork: 0 idle, 1 held.
let heapInitLock = Atomic<UInt32>(0)

@inline(__always)
func theHeap() -> UnsafeMutablePointer<MHeap>? {
    UnsafeMutablePointer(bitPattern: heapRootWord.load(ordering: .acquiring))
}

@inline(__always)
func heap() -> UnsafeMutablePointer<MHeap>? {
    if let h = theHeap() { return h }
    return heapInitSlow()
}

func lockHeapInit() {
    while !heapInitLock.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
        gm_sys_yield()
    }
}

func unlockHeapInit() {
    heapInitLock.store(0, ordering: .releasing)
}

/// Go's mallocinit. Runs on the first allocation; nil if the OS refuses memory.
@inline(never)
func heapInitSlow() -> UnsafeMutablePointer<MHeap>? {
    // Setting up probes the system (options, the cgroup CPU quota: files that may not
    // exist) and may set errno on the way; a successful malloc leaves it as it was.
    let savedErrno = gm_sys_errno()
    defer { gm_sys_set_errno(savedErrno) }
    // Before the lock: registering may call malloc, which comes back here and initialises.
    installForkHandlers()
    lockHeapInit()
    if let h = theHeap() {
        unlockHeapInit()
        return h
    }
    let h = createHeap()
    if let h { heapRootWord.store(UInt(bitPattern: h), ordering: .releasing) }
    unlockHeapInit()
    // After publication and the unlock: atexit may call malloc.
    if h != nil { registerStatsAtExit(); registerHeapMapAtExit(); registerProfileAtExit() }
    return h
}

/// A new heap in fresh memory, set up from the options; nil if the OS refuses memory.
private func createHeap() -> UnsafeMutablePointer<MHeap>? {
    // The heap and, a cache line further on, the state its lock guards (MHeap.guarded).
    let guardedOffset = (MemoryLayout<MHeap>.stride + 63) & ~63
    let bytes = (guardedOffset + MemoryLayout<HeapLocked>.stride + pageSize - 1) & ~(pageSize - 1)
    guard let raw = sysAlloc(size: bytes) else { return nil }
    let guarded = (raw + guardedOffset).bindMemory(to: HeapLocked.self, capacity: 1)
    guarded.initialize(to: HeapLocked(releasesMemory: true))
    let h = raw.bindMemory(to: MHeap.self, capacity: 1)
    h.initialize(to: MHeap(guarded: guarded))
    var procs = Option.maxProcs.read()
    if procs == 0 { procs = Int(gm_sys_ncpu()) }
    procs = Swift.min(Swift.max(procs, 1), maxProcs)
    // With rseq: one P per CPU id in front of those (Proc.swift), which then serve as the
    // compare-and-swap fallback.
    let cpuProcs = Option.rseq.read() != 0 && gm_sys_rseq_setup() != 0
        ? Swift.min(Swift.max(Int(gm_sys_ncpu_configured()), 1), maxProcs) : 0
    // A guard page must be one OS page at a span's start: only where OS pages are no larger
    // than ours (4 KiB on x86-64; AArch64 kernels with 16 or 64 KiB pages get none).
    let osPage = Int(gm_sys_os_page_size())
    h.pointee.stackGuardBytes = Option.stackGuard.read() != 0 && osPage <= pageSize ? osPage : 0
    h.pointee.debugMode = Option.debug.read() != 0
    h.pointee.tinyLimitValue = h.pointee.debugMode ? UInt(maxSmallSize + 1)
        : Option.tiny.read() != 0 ? UInt(maxTinySize + 1) : 0
    guard h.initialize(nprocs: cpuProcs + procs, cpuProcs: cpuProcs, retainPercent: Option.retainPercent.read(),
                       scavengeMode: Option.scavengeMode(), memoryLimitBytes: Option.memoryLimit.readBytes())
    else { return nil }
    // The rseq section admits CPU ids below cpuProcs from now on (before the heap is published).
    if cpuProcs != 0 { gm_sys_rseq_set_cpus(Int32(cpuProcs)) }
    // GOMALLOC_PROFILE / GOMALLOC_PROFILE_RATE: sampling from the first allocation on.
    let rate = profileRateFromOptions()
    if rate != 0 { profileSetRate(h, rate, starting: true) }
    return h
}
