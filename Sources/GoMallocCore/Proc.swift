// Proc.swift — Ps: the slots that own mcaches; a thread holds one only for one malloc or free.
//
// Role: Go gives each P (logical processor) an mcache so that a thread blocked in a system
//   call strands no cache: the P moves on to another thread. A C program has no scheduler,
//   so here a P is a slot taken with one compare-and-swap at the start of malloc/free and
//   given back at its end. The number of mcaches is bounded by the number of Ps
//   (GOMALLOC_MAXPROCS, default the CPUs this process may use), whatever the thread count;
//   a thread blocked anywhere outside malloc holds none, and a thread that exits has
//   nothing to give back.
// Go counterpart: runtime2.go (p.mcache), proc.go (acquirep/releasep, procresize).
// Invariants:
//   I1. owner == 1 exactly while one thread is inside a malloc/free using this P.
//   I2. mcache, once set, never changes; mcaches created <= nprocs.
// Concurrency: owner is Atomic (CAS acquire, store release). The P's mcache is then owned by
//   the holder. The thread-local gm_tls_preferred_p (the address of the P slot this thread
//   took last, or 0) only says where to try first.
// Failure: acquiring spins (with sched_yield) while all Ps are busy; it cannot fail.
import CGoMallocSys
import Synchronization

struct PSlot: ~Copyable {
    /// 0 = idle, 1 = held by a thread. Atomic: acquire on take, release on give back.
    let owner: Atomic<UInt32>
    /// Created the first time the P is used. Owner: P (set once, under the heap lock).
    var mcache: UnsafeMutablePointer<MCache>?
    /// This P's number (0..<nprocs). Immutable.
    var index: Int

    init(index: Int) {
        owner = Atomic(0)
        mcache = nil
        self.index = index
    }
}

/// Bytes between Ps, so that two Ps never share a cache line (or an adjacent-line prefetch pair).
let pSlotStride = 128

extension MHeap {
    @inline(__always)
    func proc(_ i: Int) -> UnsafeMutablePointer<PSlot> {
        (procs + i &* pSlotStride).assumingMemoryBound(to: PSlot.self)
    }

    /// Take a P for the duration of one malloc or free. Fast path: one CAS on the P this
    /// thread used last.
    @inline(__always)
    func acquireP() -> UnsafeMutablePointer<PSlot> {
        if let slot = UnsafeMutablePointer<PSlot>(bitPattern: gm_tls_preferred_p),
           slot.pointee.owner.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
            return slot
        }
        return acquirePSlow()
    }

    @inline(__always)
    func releaseP(_ slot: UnsafeMutablePointer<PSlot>) {
        slot.pointee.owner.store(0, ordering: .releasing)
    }

    // MARK: - Slow path (partner of acquireP)

    /// First choice: the CPU we run on (from rseq), so that threads on different CPUs use
    /// different Ps; then any idle P; while none is idle, yield and retry.
    @inline(never)
    func acquirePSlow() -> UnsafeMutablePointer<PSlot> {
        let n = nprocs
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
                    if let h = theHeap(), mcacheOf(h, slot) != nil {
                        gm_tls_preferred_p = UInt(bitPattern: slot)
                    }
                    return slot
                }
            }
            spins &+= 1
            if spins > 4 { gm_sys_yield() } else { spinLoopHint() }
        }
    }

    /// Take every P in turn order (stop the world: fork, trim, invariant checks).
    func acquireAllPs() {
        for i in 0..<nprocs {
            let slot = proc(i)
            while !slot.pointee.owner.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
                gm_sys_yield()
            }
        }
    }

    func releaseAllPs() {
        for i in 0..<nprocs { releaseP(proc(i)) }
    }
}
