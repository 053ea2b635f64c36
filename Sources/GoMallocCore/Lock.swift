// Lock.swift — the runtime mutex (a futex lock inside mmap'd metadata) and lock ranks.
//
// Role: mutual exclusion for mcentral, mheap and other shared structures. Go's runtime
//   `mutex` (lock_futex.go): spin briefly, then sleep on a futex. Debug builds also check
//   the lock order at every acquisition, as Go's lockrank.go does with GOEXPERIMENT=staticlockranking.
// Go counterpart: lock_futex.go, lockrank.go, lockrank_on.go.
// Invariants:
//   I1. state is 0 (unlocked), 1 (locked, no waiters) or 2 (locked, maybe waiters).
//   I2. Lock order (never take a rank while holding the same or a higher one):
//         P (rank proc) < stackpool < stackLarge < mcentral < mheap.
//       A thread holds at most one P and at most one mcentral or stackpool lock at a time,
//       except while it stops the world (Proc.swift), which takes every P, then the stack
//       locks, then every mcentral, then the heap. (The stack allocator, Stack.swift, takes
//       the heap lock under a stackpool lock, as Go's stackpoolalloc does.)
//       With GOMALLOC_INTERNAL_CHECKS (debug builds) every acquisition checks this against the
//       thread's held ranks (a bit set in one thread-local word) and a violation is fatal.
// Concurrency: the struct is shared; every access to `state` is atomic. The rank is immutable.
// Failure: never fails; a lock-order violation in a debug build stops the process with
//   `gomalloc: fatal error: lock order: ...`.
import CGoMallocSys
import Synchronization

/// Where a lock sits in the order (I2). Raw values are bit positions in gm_tls_held_ranks.
enum LockRank: UInt32 {
    case proc = 0
    case stackpool = 1
    case stackLarge = 2
    case mcentral = 3
    case mheap = 4
    /// The heap profile's tables (Profile.swift): taken holding a P and nothing else.
    case profile = 5
}

/// A futex mutex. Zero-initialised memory is an unlocked lock of rank proc, so locks can live
/// in mmap'd metadata; the structures that own one set its rank when they are initialised.
struct RuntimeLock: ~Copyable {
    /// Atomic: acquire on lock, release on unlock.
    let state: Atomic<UInt32>
    /// Immutable.
    let rank: LockRank

    init(rank: LockRank) {
        state = Atomic(0)
        self.rank = rank
    }

    @inline(__always)
    func lock() {
        lockRankAcquire(rank)
        if state.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return }
        lockSlow()
    }

    @inline(__always)
    func unlock() {
        if state.exchange(0, ordering: .releasing) == 2 { unlockSlow() }
        lockRankRelease(rank)
    }

    // MARK: - Slow path (partner of lock/unlock)

    @inline(never)
    private func lockSlow() {
        // Spin a little: critical sections here are short.
        for _ in 0..<64 {
            if state.load(ordering: .relaxed) == 0,
               state.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return }
            spinLoopHint()
        }
        // Mark contended and sleep until the holder wakes us.
        while state.exchange(2, ordering: .acquiring) != 0 {
            withAddress { gm_sys_futex_wait($0, 2) }
        }
    }

    @inline(never)
    private func unlockSlow() {
        withAddress { gm_sys_futex_wake($0, 1) }
    }

    @inline(__always)
    private func withAddress(_ body: (UnsafeMutablePointer<UInt32>) -> Void) {
        // The atomic's storage is the futex word (Atomic is addressable: this is its real address).
        withUnsafePointer(to: state) {
            body(UnsafeMutableRawPointer(mutating: UnsafeRawPointer($0)).assumingMemoryBound(to: UInt32.self))
        }
    }
}

/// One turn of a spin-wait loop: the CPU's pause hint.
@inline(__always)
func spinLoopHint() {
    gm_sys_pause()
}

// MARK: - Lock ranks (checked in debug builds)

/// Set in gm_tls_held_ranks while this thread stops the world: it then holds every P and
/// every mcentral at once, which I2 otherwise forbids.
private let worldStoppedBit: UInt = 1 << 8

/// Record that this thread takes a lock (or a P) of rank `r`; fatal if it holds one of the
/// same or a higher rank. No code at all in release builds.
@inline(__always)
func lockRankAcquire(_ r: LockRank) {
    #if GOMALLOC_INTERNAL_CHECKS
    lockRankCheck(r)
    #endif
}

@inline(__always)
func lockRankRelease(_ r: LockRank) {
    #if GOMALLOC_INTERNAL_CHECKS
    let held = gm_tls_held_ranks
    if held & worldStoppedBit == 0 { gm_tls_held_ranks = held & ~(UInt(1) << UInt(r.rawValue)) }
    #endif
}

/// Mark the start and end of a stop-the-world (Proc.swift), which takes locks in bulk.
@inline(__always)
func lockRankWorldStopping(_ stopping: Bool) {
    #if GOMALLOC_INTERNAL_CHECKS
    if stopping {
        if gm_tls_held_ranks != 0 { throwFatal("lock order: stopping the world while holding a lock or a P") }
        gm_tls_held_ranks = worldStoppedBit
    } else {
        gm_tls_held_ranks = 0
    }
    #endif
}

#if GOMALLOC_INTERNAL_CHECKS
@inline(never)
private func lockRankCheck(_ r: LockRank) {
    let held = gm_tls_held_ranks
    if held & worldStoppedBit != 0 { return }
    // Bits of rank r and above.
    let sameOrHigher = ~((UInt(1) << UInt(r.rawValue)) &- 1) & (worldStoppedBit &- 1)
    if held & sameOrHigher != 0 {
        switch r {
        case .proc: throwFatal("lock order: a P taken while holding a P or a lock")
        case .stackpool: throwFatal("lock order: a stackpool lock taken while holding a stack, mcentral or heap lock")
        case .stackLarge: throwFatal("lock order: the stackLarge lock taken while holding it, an mcentral or the heap lock")
        case .mcentral: throwFatal("lock order: an mcentral lock taken while holding an mcentral or the heap lock")
        case .mheap: throwFatal("lock order: the heap lock taken while holding it")
        case .profile: throwFatal("lock order: the profile lock taken while holding it")
        }
    }
    gm_tls_held_ranks = held | (UInt(1) << UInt(r.rawValue))
}
#endif
