// Proc.swift — Ps (the slots that own mcaches and count allocations), stop-the-world, fork.
//
// Role: Go gives each P (logical processor) an mcache so that a thread blocked in a system
//   call strands no cache: the P moves on to another thread. A C program has no scheduler,
//   so here a thread takes a P at the start of malloc/free and gives it back at its end,
//   in one of two ways, chosen once at start-up (MallocInit.swift):
//   * bound to CPUs (TCMalloc's per-CPU caches; what Go's P stands for): P k belongs to
//     CPU k, and a restartable sequence (rseq, gomalloc_sys.h) takes this CPU's P with
//     plain loads and one plain store — no locked instruction. The kernel restarts the
//     sequence if the thread is preempted, migrated or signalled inside it. A thread that
//     finds its CPU's P held (its holder was preempted mid-malloc) takes a fallback P;
//   * by compare-and-swap (no rseq: old kernel or glibc, valgrind, seccomp, GOMALLOC_RSEQ=0):
//     any idle P, the thread's last one first.
//   The fallback Ps (GOMALLOC_MAXPROCS, default the CPUs this process may use) are always
//   there, behind the CPU Ps; so mcaches number at most the CPUs we run on plus MAXPROCS,
//   whatever the thread count. A thread blocked anywhere outside malloc holds no P, and a
//   thread that exits has nothing to give back. Each P also counts the objects of each size
//   class allocated and freed through it (Go keeps these in the mcache; here they sit in the
//   slot, so that a free never needs an mcache: a P taken for the first time by a free has
//   none yet). Stopping the world — taking every P, every mcentral lock and the heap lock,
//   in lock order — is written once here, for fork, the invariant walk and the heap view.
// Go counterpart: runtime2.go (p), proc.go (acquirep/releasep, procresize, stopTheWorld,
//   syscall_runtime_BeforeFork / AfterFork / AfterForkInChild).
// Invariants:
//   I1. owner == 1 exactly while one thread is inside a malloc/free using this P (or while
//       the world is stopped, or trim visits it).
//   I2. mcache, once set, never changes; mcaches created <= nprocs.
//   I3. mallocs[c] - frees[c], summed over all Ps, is the number of live objects of span
//       class c (tiny sub-objects and blocks apart, in the tiny counters).
//   I4. A CPU P's owner goes 0 -> 1 only in the rseq section run on its CPU, or by
//       compare-and-swap while gm_rseq_gate counts a blocker (blockCPUProcs); a fallback
//       P's only by compare-and-swap.
// Concurrency: owner is Atomic: taken with acquire ordering (CAS, or the rseq section's load
//   then store; see gomalloc_sys.h for why a plain store suffices there: only threads on
//   CPU k run the section for P k, one at a time, and every CAS on a CPU P first waits out
//   the sections in flight with membarrier), given back with a release store. mcache is
//   Atomic (release store once, under the heap lock, by the P's holder; loads by the holder
//   are relaxed, by statistics acquire). The counters are written only by the holder
//   (relaxed load + store: one writer) and read by anyone (relaxed: statistics; exact once
//   the world is stopped). cpuProcs (MHeap) is a plain field: set before the heap is
//   published, changed only in a forked child while it has one thread. The thread-local
//   gm_tls_preferred_p (CAS binding only: the slot this thread took last, or 0) only says
//   where to try first.
// Failure: acquiring spins (with the pause hint, then sched_yield) while all Ps are busy;
//   it cannot fail. membarrier failing where it worked at start-up is fatal (a stopped
//   world could no longer exclude the rseq sections).
import CGoMallocSys
import Synchronization

struct PSlot: ~Copyable {
    /// 0 = idle, 1 = held by a thread. Atomic: acquire on take, release on give back.
    let owner: Atomic<UInt32>
    /// The MCache address, 0 until the P is first used by a malloc (see Concurrency).
    let mcacheWord: Atomic<UInt>
    /// This P's number (0..<nprocs). Immutable.
    let index: Int

    init(index: Int) {
        owner = Atomic(0)
        mcacheWord = Atomic(0)
        self.index = index
    }
}

/// The slot's header (PSlot, then the P's page cache at pageCacheOffset, PageCache.swift) is
/// padded to this; the counters follow it (numSpanClasses mallocs, then freeCounterWords
/// frees, then the tiny allocator's four, then the stack allocator's five, 8 bytes each).
let pSlotHeaderBytes = 128
/// Free counters: one per span class, then one per size class for the frees that went to
/// heap profiling's rings (MCache.ringCount; all of noscan objects: profileFreeRing).
let freeCounterWords = numSpanClasses + numSizeClasses
/// Bytes between Ps: a power of two (the rseq section indexes Ps by a shift,
/// gomalloc_sys.h), a multiple of 128 so that two Ps never share a cache line (or an
/// adjacent-line prefetch pair), and room for the header and counters (a test checks it).
let pSlotStride = 1 << Int(GM_PSLOT_SHIFT)
/// Bytes of a slot's header and counters (a test checks that pSlotStride holds them).
let pSlotUsedBytes = pSlotHeaderBytes + (numSpanClasses + freeCounterWords + TinyCounter.count + StackCounter.count) * 8

/// The tiny allocator's per-P counters (Tiny.swift).
enum TinyCounter: Int {
    /// Sub-objects handed out (each is one malloc).
    case allocs = 0
    /// Sub-objects freed (each is one free).
    case frees = 1
    /// 16-byte blocks taken from a tiny span.
    case blockAllocs = 2
    /// Blocks given back to their span (their last sub-object freed and the block closed).
    case blockFrees = 3
    static let count = 4
}

extension UnsafeMutablePointer where Pointee == PSlot {
    var mcache: UnsafeMutablePointer<MCache>? {
        @inline(__always) get { UnsafeMutablePointer<MCache>(bitPattern: pointee.mcacheWord.load(ordering: .acquiring)) }
        @inline(__always) nonmutating set { pointee.mcacheWord.store(UInt(bitPattern: newValue), ordering: .releasing) }
    }

    /// The mcache of a P taken through the thread-local (which always has one), for its
    /// holder: a relaxed load (the holder's CAS acquired the P after the mcache was set).
    @inline(__always)
    var heldMCache: UnsafeMutablePointer<MCache> {
        UnsafeMutablePointer<MCache>(bitPattern: pointee.mcacheWord.load(ordering: .relaxed)).unsafelyUnwrapped
    }

    /// Objects of each span class allocated through this P, indexed by SpanClass.index
    /// (scan and noscan apart; the large classes unused: large objects are counted by the
    /// heap; tiny sub-objects and their blocks are counted by the tiny counters instead).
    @inline(__always)
    var mallocs: AtomicWords {
        AtomicWords(base: (UnsafeMutableRawPointer(self) + pSlotHeaderBytes).assumingMemoryBound(to: UInt64.self))
    }

    /// Objects of each span class freed through this P; from index numSpanClasses on, objects
    /// of noscan size class k freed through heap profiling's ring numSpanClasses + k
    /// (profileFreeRing, MSpan.swift), which count as frees of span class (k << 1) | 1.
    @inline(__always)
    var frees: AtomicWords {
        AtomicWords(base: (UnsafeMutableRawPointer(self) + pSlotHeaderBytes + numSpanClasses &* 8)
            .assumingMemoryBound(to: UInt64.self))
    }

    /// Objects of span class index `c` freed through this P, those counted on heap
    /// profiling's ring of its size class included (noscan classes).
    func freeCount(_ c: Int) -> UInt64 {
        let f = frees[c]
        return c & 1 != 0 ? f &+ frees[numSpanClasses &+ c &>> 1] : f
    }

    /// The tiny allocator's counters (TinyCounter): sub-objects allocated and freed, 16-byte
    /// blocks opened and freed through this P.
    @inline(__always)
    var tinyCounters: AtomicWords {
        AtomicWords(base: (UnsafeMutableRawPointer(self) + pSlotHeaderBytes + (numSpanClasses &+ freeCounterWords) &* 8)
            .assumingMemoryBound(to: UInt64.self))
    }

    /// Count one malloc of span class index `c`. Caller holds the P (the only writer).
    @inline(__always)
    func countMalloc(_ c: Int) { bump(mallocs.word(c)) }

    @inline(__always)
    func countFree(_ c: Int) { bump(frees.word(c)) }

    @inline(__always)
    func countTiny(_ which: TinyCounter) { bump(tinyCounters.word(which.rawValue)) }

    /// Add `d` (wrapping) to counter word `w`: the holder is its only writer, so a relaxed
    /// load and store, no locked read-modify-write.
    @inline(__always)
    func bump(_ w: UnsafeMutablePointer<Atomic<UInt64>>, by d: UInt64 = 1) {
        w.pointee.store(w.pointee.load(ordering: .relaxed) &+ d, ordering: .relaxed)
    }
}

extension UnsafeMutablePointer where Pointee == MHeap {
    @inline(__always)
    func proc(_ i: Int) -> UnsafeMutablePointer<PSlot> {
        (pointee.procs + i &* pSlotStride).assumingMemoryBound(to: PSlot.self)
    }

    /// Take a P for the duration of one malloc or free. Fast path: this CPU's P (rseq) or
    /// one CAS on the P this thread used last.
    @inline(__always)
    func acquireP() -> UnsafeMutablePointer<PSlot> {
        if let slot = tryAcquirePreferredP(needsMCache: true) { return slot }
        lockRankAcquire(.proc)
        return acquirePSlow()
    }

    /// Take this thread's P without waiting: with rseq, this CPU's (no locked instruction);
    /// otherwise the P the thread used last, if idle (one CAS). nil when it is busy, or
    /// (`needsMCache`) not yet used: the malloc fast path then starts over on the slow path,
    /// which creates its mcache. A P found through the thread-local always has one; a free
    /// needs one only for a span its P caches, and such a P has one.
    @inline(__always)
    func tryAcquirePreferredP(needsMCache: Bool) -> UnsafeMutablePointer<PSlot>? {
        // No mode test: without CPU Ps the section fails at once (gm_rseq_gate is 0).
        if let slot = UnsafeMutablePointer<PSlot>(bitPattern: gm_sys_rseq_take_p(pointee.cpuProcsEnd)) {
            if needsMCache && slot.pointee.mcacheWord.load(ordering: .relaxed) == 0 {
                slot.pointee.owner.store(0, ordering: .releasing)
                return nil
            }
            lockRankAcquire(.proc)
            return slot
        }
        guard let slot = UnsafeMutablePointer<PSlot>(bitPattern: gm_tls_preferred_p),
              slot.pointee.owner.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
        else { return nil }
        lockRankAcquire(.proc)
        return slot
    }

    @inline(__always)
    func releaseP(_ slot: UnsafeMutablePointer<PSlot>) {
        slot.pointee.owner.store(0, ordering: .releasing)
        lockRankRelease(.proc)
    }

    // MARK: - Slow path (partner of acquireP)

    /// With rseq: this CPU's P (created on first use), else an idle fallback P (CAS: never a
    /// CPU P, whose owner word only the rseq section and a blocked world may write).
    /// Without: first the CPU we run on, so that threads on different CPUs use different
    /// Ps; then any idle P. While none is idle, pause, then yield, and retry.
    @inline(never)
    func acquirePSlow() -> UnsafeMutablePointer<PSlot> {
        let ncpu = pointee.cpuProcs
        let n = pointee.nprocs &- ncpu
        var start = Int(gm_sys_rseq_cpu())
        if start < 0 { start = Int(truncatingIfNeeded: gm_sys_gettid()) }
        start = start % n
        var spins = 0
        while true {
            if ncpu != 0, let slot = UnsafeMutablePointer<PSlot>(bitPattern: gm_sys_rseq_take_p(pointee.cpuProcsEnd)) {
                _ = mcacheOf(self, slot)
                return slot
            }
            for k in 0..<n {
                let slot = proc(ncpu &+ (start &+ k) % n)
                if slot.pointee.owner.load(ordering: .relaxed) == 0,
                   slot.pointee.owner.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
                    // The fast paths rely on it: a P found through the thread-local has an
                    // mcache. Create it now (the first use of this P).
                    if mcacheOf(self, slot) != nil && ncpu == 0 {
                        gm_tls_preferred_p = UInt(bitPattern: slot)
                    }
                    return slot
                }
            }
            spins &+= 1
            if spins > 4 { gm_sys_yield() } else { spinLoopHint() }
        }
    }

    /// Keep the rseq section off the CPU Ps (gomalloc_sys.h) while this thread takes them
    /// by compare-and-swap; a no-op without rseq. Pairs with unblockCPUProcs.
    func blockCPUProcs() {
        if pointee.cpuProcs != 0 && gm_sys_rseq_block() == 0 {
            throwFatal("membarrier failed: cannot stop threads taking Ps by rseq")
        }
    }

    func unblockCPUProcs() {
        if pointee.cpuProcs != 0 { gm_sys_rseq_unblock() }
    }

    /// Take P number `i`, waiting while a thread is inside malloc or free with it (trim
    /// visits every P this way, one at a time). A CPU P needs blockCPUProcs first.
    func acquireP(at i: Int) -> UnsafeMutablePointer<PSlot> {
        lockRankAcquire(.proc)
        let slot = proc(i)
        waitAndTake(slot)
        return slot
    }

    private func waitAndTake(_ slot: UnsafeMutablePointer<PSlot>) {
        var spins = 0
        while !slot.pointee.owner.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
            spins &+= 1
            if spins > 4 { gm_sys_yield() } else { spinLoopHint() }
        }
    }

    // MARK: - Stop the world

    /// Take every P (waiting for each thread inside malloc or free to leave), then the stack
    /// allocator's locks, then every mcentral lock, then the heap lock — the lock order. Afterwards no other thread is
    /// inside the allocator and every counter and bitmap is exact. Used by fork, the
    /// invariant walk and the heap view; `startTheWorld` undoes it.
    func stopTheWorld() {
        lockRankWorldStopping(true)
        blockCPUProcs()
        for i in 0..<pointee.nprocs { waitAndTake(proc(i)) }
        lockStacks()
        for i in 0..<numCentrals { central(at: i).pointee.lock.lock() }
        pointee.lock.lock()
    }

    func startTheWorld() {
        pointee.lock.unlock()
        for i in 0..<numCentrals { central(at: i).pointee.lock.unlock() }
        unlockStacks()
        for i in 0..<pointee.nprocs { proc(i).pointee.owner.store(0, ordering: .releasing) }
        unblockCPUProcs()
        lockRankWorldStopping(false)
    }
}

// MARK: - fork

/// Installed (pthread_atfork) before the heap is first set up, so that no fork can copy a
/// half-initialised heap or a held initialisation lock into a child.
private let forkHandlersInstalled = Atomic<Bool>(false)

/// Register the fork handlers once. Called before heap initialisation takes its lock:
/// glibc's pthread_atfork may itself call malloc, which then initialises the heap.
func installForkHandlers() {
    if forkHandlersInstalled.load(ordering: .acquiring) { return }
    if forkHandlersInstalled.exchange(true, ordering: .acquiringAndReleasing) { return }
    _ = gm_sys_atfork(forkPrepare, forkParent, forkChild)
}

/// Wait for any first initialisation in progress (and keep others from starting), then stop
/// the world, so the child starts with consistent metadata and no lock held by a thread that
/// does not exist there.
private func forkPrepare() {
    lockHeapInit()
    theHeap()?.stopTheWorld()
}

private func forkRelease() {
    theHeap()?.startTheWorld()
    unlockHeapInit()
}

private func forkParent() { forkRelease() }

/// The child has one thread: give every P's page cache back (its world is still stopped,
/// PageCache.swift), register membarrier's rseq flavour for its new address space, or, if
/// that fails, take Ps by compare-and-swap only from now on.
private func forkChild() {
    if let h = theHeap() {
        for i in 0..<h.pointee.nprocs { h.flushPageCacheLocked(h.proc(i)) }
        h.abandonScavengeBatchInChild()
        // A thread that was between blockCPUProcs and unblockCPUProcs (a trim, the
        // scavenger's idle flush) left its block on the gate; only ours (stopTheWorld's) exists here.
        if h.pointee.cpuProcs != 0 { gm_sys_rseq_reset_gate(Int32(h.pointee.cpuProcs), 1) }
    }
    scavengerThreadForkChild()
    forkRelease()
    if let h = theHeap(), h.pointee.cpuProcs != 0 && gm_sys_rseq_setup() == 0 { h.bindPsByCASOnly() }
}

extension UnsafeMutablePointer where Pointee == MHeap {
    /// From now on take every P (the former CPU Ps too) by compare-and-swap. Only while this
    /// process has a single thread holding no P: a forked child whose rseq set-up failed,
    /// and tests that choose a thread's P through gm_tls_preferred_p.
    func bindPsByCASOnly() {
        if pointee.cpuProcs != 0 { gm_sys_rseq_set_cpus(-Int32(pointee.cpuProcs)) }
        pointee.cpuProcs = 0
    }
}
