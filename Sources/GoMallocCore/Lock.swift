// Lock.swift — the runtime mutex: a futex lock that lives inside mmap'd metadata.
//
// Role: mutual exclusion for mcentral, mheap and other shared structures. Go's runtime
//   `mutex` (lock_futex.go): spin briefly, then sleep on a futex.
// Go counterpart: lock_futex.go, lockrank.go.
// Invariants:
//   I1. state is 0 (unlocked), 1 (locked, no waiters) or 2 (locked, maybe waiters).
//   I2. Lock order (never take a lower rank while holding a higher one):
//         P slot (rank 0) < mcentral (rank 1) < mheap (rank 2).
//       A thread holds at most one mcentral lock at a time.
// Concurrency: the struct is shared; every access is atomic.
// Failure: never fails; a deadlock would be a bug in lock order, checked by tests.
import CGoMallocSys
import Synchronization

/// A futex mutex. Zero-initialised memory is an unlocked lock, so it can live in mmap'd metadata.
struct RuntimeLock: ~Copyable {
    /// Atomic: acquire on lock, release on unlock.
    let state: Atomic<UInt32>

    init() { state = Atomic(0) }

    @inline(__always)
    func lock() {
        if state.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return }
        lockSlow()
    }

    @inline(__always)
    func tryLock() -> Bool {
        state.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
    }

    @inline(__always)
    func unlock() {
        if state.exchange(0, ordering: .releasing) == 2 { unlockSlow() }
    }

    /// For debug assertions: true while some thread holds the lock.
    var isLocked: Bool { state.load(ordering: .relaxed) != 0 }

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

@inline(__always)
func spinLoopHint() {
    // `pause` on x86, `yield` on AArch64 would go here; a compiler barrier is enough for correctness.
}
