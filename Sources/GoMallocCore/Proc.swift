// Proc.swift — Ps (the slots that own mcaches and count allocations), stop-the-world, fork.
//
// Role: Go gives each P (logical processor) an mcache so that a thread blocked in a system
//   call strands no cache: the P moves on to another thread. A C program has no scheduler,
//   so here a P is a slot taken with one compare-and-swap at the start of malloc/free and
//   given back at its end. The number of mcaches is bounded by the number of Ps
//   (GOMALLOC_MAXPROCS, default the CPUs this process may use), whatever the thread count;
//   a thread blocked anywhere outside malloc holds none, and a thread that exits has
//   nothing to give back. Each P also counts the objects of each size class allocated and
//   freed through it (Go keeps these in the mcache; here they sit in the slot, so that a free
//   never needs an mcache: a P taken for the first time by a free has none yet).
//   Stopping the world — taking every P, every mcentral lock and the heap lock, in lock
//   order — is written once here, for fork, the invariant walk and the heap view.
// Go counterpart: runtime2.go (p), proc.go (acquirep/releasep, procresize, stopTheWorld,
//   syscall_runtime_BeforeFork / AfterFork / AfterForkInChild).
// Invariants:
//   I1. owner == 1 exactly while one thread is inside a malloc/free using this P (or while
//       the world is stopped).
//   I2. mcache, once set, never changes; mcaches created <= nprocs.
//   I3. mallocs[c] - frees[c], summed over all Ps, is the number of live objects of class c.
// Concurrency: owner is Atomic (CAS acquire, store release); the holder owns the P's mcache.
//   mcache is Atomic (release store once, under the heap lock, by the P's holder; loads by
//   the holder are relaxed, by statistics acquire). The counters are written only by the
//   holder (relaxed load + store: one writer) and read by anyone (relaxed: statistics; exact
//   once the world is stopped). The thread-local gm_tls_preferred_p (the address of the P
//   slot this thread took last, or 0) only says where to try first.
// Failure: acquiring spins (with the pause hint, then sched_yield) while all Ps are busy;
//   it cannot fail.
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

/// The slot's header (PSlot) is padded to this; the counters follow it (numSizeClasses
/// mallocs, then numSizeClasses frees, 8 bytes each).
let pSlotHeaderBytes = 128
/// Bytes between Ps, a multiple of 128 so that two Ps never share a cache line (or an
/// adjacent-line prefetch pair).
let pSlotStride = (pSlotHeaderBytes + 2 * numSizeClasses * 8 + 127) & ~127

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

    /// Objects of each size class allocated through this P (class 0 unused: large objects
    /// are counted by the heap).
    @inline(__always)
    var mallocs: AtomicWords {
        AtomicWords(base: (UnsafeMutableRawPointer(self) + pSlotHeaderBytes).assumingMemoryBound(to: UInt64.self))
    }

    /// Objects of each size class freed through this P.
    @inline(__always)
    var frees: AtomicWords {
        AtomicWords(base: (UnsafeMutableRawPointer(self) + pSlotHeaderBytes + numSizeClasses &* 8)
            .assumingMemoryBound(to: UInt64.self))
    }

    /// Count one malloc of size class `c`. Caller holds the P (the only writer).
    @inline(__always)
    func countMalloc(_ c: Int) {
        let w = mallocs.word(c)
        w.pointee.store(w.pointee.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }

    @inline(__always)
    func countFree(_ c: Int) {
        let w = frees.word(c)
        w.pointee.store(w.pointee.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }
}

extension UnsafeMutablePointer where Pointee == MHeap {
    @inline(__always)
    func proc(_ i: Int) -> UnsafeMutablePointer<PSlot> {
        (pointee.procs + i &* pSlotStride).assumingMemoryBound(to: PSlot.self)
    }

    /// Take a P for the duration of one malloc or free. Fast path: one CAS on the P this
    /// thread used last.
    @inline(__always)
    func acquireP() -> UnsafeMutablePointer<PSlot> {
        if let slot = tryAcquirePreferredP() { return slot }
        lockRankAcquire(.proc)
        return acquirePSlow()
    }

    /// Take the thread's preferred P if it is idle, without waiting; nil otherwise (the
    /// fast paths then start over on the slow path). A P found through the thread-local
    /// always has an mcache.
    @inline(__always)
    func tryAcquirePreferredP() -> UnsafeMutablePointer<PSlot>? {
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

    /// First choice: the CPU we run on (from rseq), so that threads on different CPUs use
    /// different Ps; then any idle P; while none is idle, pause, then yield, and retry.
    @inline(never)
    func acquirePSlow() -> UnsafeMutablePointer<PSlot> {
        let n = pointee.nprocs
        var start = Int(gm_sys_rseq_cpu())
        if start < 0 { start = Int(truncatingIfNeeded: gm_sys_gettid()) }
        start = start % n
        var spins = 0
        while true {
            for k in 0..<n {
                let slot = proc((start &+ k) % n)
                if slot.pointee.owner.load(ordering: .relaxed) == 0,
                   slot.pointee.owner.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
                    // The fast paths rely on it: a P found through the thread-local has an
                    // mcache. Create it now (the first use of this P).
                    if mcacheOf(self, slot) != nil {
                        gm_tls_preferred_p = UInt(bitPattern: slot)
                    }
                    return slot
                }
            }
            spins &+= 1
            if spins > 4 { gm_sys_yield() } else { spinLoopHint() }
        }
    }

    /// Take P number `i`, waiting while a thread is inside malloc or free with it (trim
    /// visits every P this way, one at a time).
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

    /// Take every P (waiting for each thread inside malloc or free to leave), then every
    /// mcentral lock, then the heap lock — the lock order. Afterwards no other thread is
    /// inside the allocator and every counter and bitmap is exact. Used by fork, the
    /// invariant walk and the heap view; `startTheWorld` undoes it.
    func stopTheWorld() {
        lockRankWorldStopping(true)
        for i in 0..<pointee.nprocs { waitAndTake(proc(i)) }
        for i in 0..<numSpanClasses { central(SpanClass(raw: UInt8(i))).pointee.lock.lock() }
        pointee.lock.lock()
    }

    func startTheWorld() {
        pointee.lock.unlock()
        for i in 0..<numSpanClasses { central(SpanClass(raw: UInt8(i))).pointee.lock.unlock() }
        for i in 0..<pointee.nprocs { proc(i).pointee.owner.store(0, ordering: .releasing) }
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
private func forkChild() { forkRelease() }
