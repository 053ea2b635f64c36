// BackgroundScavenger.swift — the scavenger's thread: memory goes back to the OS while the
// program makes no heap call.
//
// Role: the inline scavenger (Scavenger.swift) runs only when the program frees; a server
//   that frees most of its heap and then waits for requests would keep what the pacing left
//   behind. Once the heap has mapped backgroundScavengeThreshold (64 MiB: a short-lived
//   `ls` never gets a thread) and GOMALLOC_SCAVENGE is `on`, a thread of ours takes over the
//   paced part of the policy. Every tick (100 ms) it releases the excess over the retain
//   goal, at most scavengerBusyBudgetPages a tick (16 MiB: madvise of that much takes about
//   a millisecond, so a busy program's scavenging stays near Go's 1% of a CPU); once no
//   malloc or free has happened for scavengerIdleNanos (one second) it flushes the caches as
//   malloc_trim does and releases every free page, at once, then sleeps until a span is
//   freed again. While it runs the free path releases only urgent excess (I5).
// Go counterpart: mgcscavenge.go (bgscavenge, scavengeSleep, the scavenger's pacing).
//   Go parks its scavenger between GC cycles and paces it by CPU time; ours is paced by
//   pages per tick and parks once everything is released. Go never flushes mcaches from
//   its scavenger (its GC does, every cycle); ours does once per idle period.
// Invariants:
//   I1. At most one thread: scavengerThreadState goes none -> wanted -> starting -> running
//       (or failed, for good) by compare-and-swap; only a forked child sets it back
//       (running or starting -> wanted: the thread does not exist there, a later allocation
//       starts another).
//   I2. The thread is started only from the malloc slow path after it gave its P back
//       (startScavengerIfWanted), holding no allocator lock: pthread_create calls malloc.
//   I3. The thread never calls malloc and holds the heap lock only to reserve and give back
//       batches (Scavenger.I3); madvise runs without it.
//   I4. No lost wake-up: the thread publishes `parked` (sequentially consistent) before it
//       looks at the free pages under the heap lock; a freeing thread changes the free pages
//       under that lock before it reads `parked` (sequentially consistent). Either the
//       freeing thread sees `parked` and wakes it, or the thread's look at the free pages
//       comes after the free's unlock and sees them.
// Concurrency: the state words are atomics (orderings at each use); the ticker's fields are
//   the thread's own. Across fork: the world is stopped in the parent (the thread is
//   outside the allocator's locks or waiting for them); the child resets the state.
// Failure: if the thread cannot be created (EAGAIN: a thread limit), the state stays
//   `failed` and the inline policy goes on pacing as for a small heap.
import CGoMallocSys
import Synchronization

/// The mapped heap past which the thread is started (GOMALLOC_SCAVENGE=on).
let backgroundScavengeThreshold = 64 << 20
/// How often the thread looks while the program makes heap calls.
let scavengerTickNanos: UInt64 = 100_000_000
/// How long without a malloc or free counts as idle.
let scavengerIdleNanos: UInt64 = 1_000_000_000
/// Pages the thread releases per tick while the program is busy (16 MiB).
let scavengerBusyBudgetPages = 2048

/// The thread's life (I1). Atomic: compare-and-swap, relaxed loads on the paths that
/// only ask.
package enum ScavengerThreadState: UInt32 {
    case none = 0, wanted = 1, starting = 2, running = 3, failed = 4
}
package let scavengerThreadState = Atomic<UInt32>(ScavengerThreadState.none.rawValue)
/// The futex word the thread sleeps on; a wake adds one. Atomic: release add, acquire load.
private let scavengerWakeWord = Atomic<UInt32>(0)
/// Whether the thread sleeps with nothing left to do (I4). Atomic: sequentially consistent.
private let scavengerParked = Atomic<Bool>(false)

#if GOMALLOC_HOSTED
/// Test seam: the hosted library (tests, the CLI) starts no thread unless a test says so;
/// tests drive ScavengerTicker on their own clock instead.
package let scavengerThreadAllowed = Atomic<Bool>(false)
#endif

/// Whether the thread has taken over the paced release (I5 of Scavenger.swift).
@inline(__always)
var scavengerThreadRunning: Bool {
    scavengerThreadState.load(ordering: .relaxed) == ScavengerThreadState.running.rawValue
}

/// The heap has grown past the threshold (caller holds the heap lock): ask for the thread.
func wantScavengerThread() {
    #if GOMALLOC_HOSTED
    if !scavengerThreadAllowed.load(ordering: .relaxed) { return }
    #endif
    _ = scavengerThreadState.compareExchange(
        expected: ScavengerThreadState.none.rawValue, desired: ScavengerThreadState.wanted.rawValue,
        ordering: .relaxed)
}

/// Start the thread if it is wanted (I2). Caller holds no P and no allocator lock.
@inline(__always)
func startScavengerIfWanted() {
    if scavengerThreadState.load(ordering: .relaxed) == ScavengerThreadState.wanted.rawValue {
        startScavengerThread()
    }
}

@inline(never)
private func startScavengerThread() {
    guard scavengerThreadState.compareExchange(
        expected: ScavengerThreadState.wanted.rawValue, desired: ScavengerThreadState.starting.rawValue,
        ordering: .acquiringAndReleasing).exchanged else { return }
    // pthread_create may set errno on its way (and calls malloc, which sees `starting`).
    let savedErrno = gm_sys_errno()
    let ok = gm_sys_thread_start(scavengerThreadMain) == 0
    gm_sys_set_errno(savedErrno)
    // A fork between the exchange above and here made the child `wanted`; this is the parent.
    scavengerThreadState.store(ok ? ScavengerThreadState.running.rawValue : ScavengerThreadState.failed.rawValue,
                               ordering: .releasing)
}

/// A span went back to the heap: if the thread sleeps with nothing to do, wake it (I4).
/// Caller holds no heap lock.
@inline(__always)
func wakeScavengerIfParked() {
    if scavengerParked.load(ordering: .sequentiallyConsistent) { wakeScavenger() }
}

@inline(never)
private func wakeScavenger() {
    if scavengerParked.exchange(false, ordering: .sequentiallyConsistent) {
        scavengerWakeWord.add(1, ordering: .releasing)
        withFutexWord { gm_sys_futex_wake($0, 1) }
    }
}

private func withFutexWord(_ body: (UnsafeMutablePointer<UInt32>) -> Void) {
    // The atomic's storage is the futex word (a global Atomic has a stable address).
    withUnsafePointer(to: scavengerWakeWord) {
        body(UnsafeMutableRawPointer(mutating: $0).assumingMemoryBound(to: UInt32.self))
    }
}

/// In a forked child (one thread, world stopped): the parent's thread is not here (I1).
func scavengerThreadForkChild() {
    let s = scavengerThreadState.load(ordering: .relaxed)
    if s == ScavengerThreadState.running.rawValue || s == ScavengerThreadState.starting.rawValue {
        scavengerThreadState.store(ScavengerThreadState.wanted.rawValue, ordering: .relaxed)
    }
    scavengerParked.store(false, ordering: .relaxed)
}

// MARK: - The thread

/// The thread's body: tick, sleep, park when idle and done (I4). Never returns.
private func scavengerThreadMain(_: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let name: StaticString = "gomalloc-scav"
    gm_sys_thread_set_name(UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self))
    guard let h = theHeap() else { return nil }
    var ticker = ScavengerTicker()
    while true {
        let seq = scavengerWakeWord.load(ordering: .acquiring)
        let sleep = ticker.tick(h, now: gm_sys_nanotime())
        if sleep != 0 {
            withFutexWord { gm_sys_futex_wait_for($0, seq, sleep) }
            continue
        }
        scavengerParked.store(true, ordering: .sequentiallyConsistent)
        h.pointee.lock.lock()
        let free = h.freeUnscavengedPages
        h.pointee.lock.unlock()
        if free == 0 { withFutexWord { gm_sys_futex_wait($0, seq) } }
        scavengerParked.store(false, ordering: .relaxed)
    }
}

/// The thread's policy, one tick at a time, on the caller's clock (tests drive it).
struct ScavengerTicker {
    /// Heap calls counted at the last tick (UInt64.max: none yet), and when they last changed.
    private var lastActivity = UInt64.max
    private var lastActive: UInt64 = 0
    /// The caches were flushed in this idle period.
    private var flushed = false

    init() {}

    /// Release what the policy says at `now` (CLOCK_MONOTONIC ns). Returns how long to sleep
    /// before the next tick, or 0 when idle with everything released (park until woken).
    mutating func tick(_ h: UnsafeMutablePointer<MHeap>, now: UInt64) -> UInt64 {
        let activity = h.heapCallCount()
        if activity != lastActivity {
            lastActivity = activity
            lastActive = now
            flushed = false
        }
        if now &- lastActive < scavengerIdleNanos {
            h.releaseFreePages(budget: scavengerBusyBudgetPages, background: true)
            return scavengerTickNanos
        }
        // Idle: what the caches hold goes back to the heap once, then every free page to the OS.
        if !flushed {
            h.flushCachesForTrim()
            reportDeferred()
            flushed = true
            lastActivity = h.heapCallCount()
        }
        h.releaseFreePages(goal: 0, background: true)
        h.pointee.lock.lock()
        let left = h.freeUnscavengedPages
        h.pointee.lock.unlock()
        return left == 0 ? 0 : scavengerTickNanos
    }
}

extension UnsafeMutablePointer where Pointee == MHeap {
    /// Every malloc and free so far, as the Ps and the heap count them (relaxed loads of
    /// counters other threads bump: a change is all the ticker asks about).
    func heapCallCount() -> UInt64 {
        var n: UInt64 = 0
        for i in 0..<pointee.nprocs {
            let p = proc(i)
            for spc in 0..<numSpanClasses { n &+= p.mallocs[spc] &+ p.freeCount(spc) }
            n &+= p.tinyCounters[TinyCounter.allocs.rawValue] &+ p.tinyCounters[TinyCounter.frees.rawValue]
        }
        pointee.lock.lock()
        n &+= locked.pointee.largeAllocCount &+ locked.pointee.largeFreeCount
        pointee.lock.unlock()
        let stacks = readStackStats()
        return n &+ stacks.allocs &+ stacks.frees
    }
}
