// Scavenger.swift — returning free pages to the OS so that RSS follows the live heap.
//
// Role: Go runs a background scavenger that keeps retained free memory near 10% over the
//   heap goal, paced so that it never takes more than ~1% of a CPU. Here the policy runs
//   inline on the heap's free path while the heap is small: when free-but-resident pages
//   exceed retainPercent of the in-use pages plus one chunk of slack, the excess (highest
//   addresses first, as Go does) is released with MADV_DONTNEED. Like Go's pacing (and
//   mimalloc's purge delay), release is paced: at most once per scavengePeriod, so memory
//   freed and reused within a few milliseconds (a large buffer replaced by another) is not
//   released and faulted back in each time — unless the excess grows past twice the goal
//   plus 32 MiB, which is released at once. Once the heap has mapped 64 MiB the paced part
//   moves to a thread of ours (BackgroundScavenger.swift), which also returns everything
//   once the program has been idle for a second. GOMALLOC_SCAVENGE=eager releases every
//   free page at once; =off releases nothing but on malloc_trim and the memory limit.
//   GOMALLOC_MEMORY_LIMIT (I4) shrinks the goal near the limit and makes release urgent.
//   malloc_trim (trimHeap, here) flushes the caches and releases everything. The mechanism
//   — finding free, unscavenged runs highest first in the page allocator's bitmaps and
//   releasing them with sysUnused — is the page allocator's, and sits at the end of this file.
// Go counterpart: mgcscavenge.go (bgscavenge, scavengeGoal, pageAlloc.scavenge).
// Invariants:
//   I1. After scavengeIfNeeded and the release it asked for: freeUnscavengedPages <= the
//       retain goal + one chunk (while the background thread runs: after its next ticks,
//       at most scavengerBusyBudgetPages a tick, unless urgent).
//   I2. A page is never both allocated and scavenged (the page allocator clears the bit
//       when it hands the page out; it is then known to read as zero).
//   I3. The inline scavenger releases without the heap lock (Go 1.18's scavengeOne does the
//       same): under the lock it reserves up to 8 free runs by allocating them in the page
//       allocator (HeapLocked.scavengeBatch; one batch at a time), lets go, madvises them,
//       and frees them as scavenged under the lock again. Reserved pages belong to no span
//       and to no cache: pagesInUse and the invariant walk count them apart. trim releases
//       under the lock (it is explicit, and wants everything at once).
//   I4. With a memory limit of L pages: the retain goal is at most 0.95 L less the resident
//       pages that are not free (never below 0); while resident pages exceed 0.95 L every
//       release is urgent, on the free path and after each allocation that takes pages
//       (checkMemoryLimit); MemoryLimitHits counts the allocations that took the resident
//       heap from at or under L to past it.
//   I5. While the background thread runs, the free path releases only urgent excess.
// Concurrency: Guarded by the heap lock (caller holds it), except finishScavenge and
//   releaseFreePages (the background thread's entry), which read the batch their caller
//   reserved without it (nobody else writes a batch in flight but a forked child, which has
//   one thread) and take the lock to give it back.
// Failure: a failed madvise leaves pages resident; nothing else changes.
import CGoMallocSys
import Synchronization

/// Go paces its scavenger to about 1% of a CPU; 50 ms between releases is our equivalent.
let scavengePeriodNanos: UInt64 = 50_000_000

#if GOMALLOC_HOSTED
/// Test seam: when non-zero, the scavenger's clock (CLOCK_MONOTONIC ns) reads this instead.
package let scavengeClockForTesting = Atomic<UInt64>(0)

@inline(__always)
private func scavengeNow() -> UInt64 {
    let t = scavengeClockForTesting.load(ordering: .relaxed)
    return t != 0 ? t : gm_sys_nanotime()
}
#else
@inline(__always)
private func scavengeNow() -> UInt64 { gm_sys_nanotime() }
#endif

// MARK: - Policy

extension UnsafeMutablePointer where Pointee == MHeap {
    /// Free pages not returned to the OS.
    var freeUnscavengedPages: Int { locked.pointee.pages.freePages &- locked.pointee.pages.scavengedPages }

    /// Pages of ours that may be resident: the committed heap (spans, stacks, page caches,
    /// free pages) less what is released, plus the metadata. What the memory limit limits.
    var residentPages: Int {
        let metadata = locked.pointee.persistent.sys &+ locked.pointee.arenas.metadataBytes
        return locked.pointee.pages.totalPages &- locked.pointee.pages.scavengedPages &+ (metadata &>> pageShift)
    }

    /// Pages we may keep free and resident. In-use pages as the page allocator counts them:
    /// pages held by page caches too (at most 64 per P), so no walk of the Ps on this path.
    /// With a memory limit, no more than fits under 95% of it beside what is not free (I4);
    /// with GOMALLOC_SCAVENGE=eager, none.
    var retainGoalPages: Int {
        if pointee.scavengeMode == .eager { return 0 }
        let goal = locked.pointee.pages.inUsePages &* pointee.retainPercent / 100 &+ pallocChunkPages
        let limit = pointee.memoryLimitPages
        if limit == 0 { return goal }
        let room = limit &- limit / 20 &- (residentPages &- freeUnscavengedPages)
        return Swift.max(Swift.min(goal, room), 0)
    }

    /// Whether the resident heap is past 95% of the memory limit (0: none).
    private var nearMemoryLimit: Bool {
        let limit = pointee.memoryLimitPages
        return limit != 0 && residentPages > limit &- limit / 20
    }

    /// Pick the excess over the retain goal for release. Caller holds the heap lock. Returns
    /// true when it reserved a batch (I3): the caller must call finishScavenge once it has
    /// let go of the heap lock. Urgent (no pacing): GOMALLOC_SCAVENGE=eager, past 95% of the
    /// memory limit, or an excess past twice the goal plus 32 MiB. Otherwise paced, on the
    /// free path while the heap is small, by the background thread once it runs (I5).
    func scavengeIfNeeded() -> Bool {
        // A free may bring the resident heap back under the limit: the next crossing counts.
        if pointee.memoryLimitPages != 0 && residentPages <= pointee.memoryLimitPages {
            locked.pointee.overMemoryLimit = false
        }
        if locked.pointee.scavengeBatch.count != 0 { return false }  // one batch at a time
        let mode = pointee.scavengeMode
        let nearLimit = nearMemoryLimit
        if mode == .off && !nearLimit { return false }
        let free = freeUnscavengedPages
        let goal = retainGoalPages
        if free <= goal &+ (mode == .eager || nearLimit ? 0 : pallocChunkPages) { return false }
        let urgent = mode == .eager || nearLimit || free > 2 &* goal &+ 8 &* pallocChunkPages
        if !urgent {
            if scavengerThreadRunning { return false }
            let now = scavengeNow()
            if now &- locked.pointee.lastScavenge < scavengePeriodNanos { return false }
            locked.pointee.lastScavenge = now
        }
        return reserveScavengeBatch(maxPages: Int.max)
    }

    /// The memory limit's check after an allocation took pages (caller holds the heap lock;
    /// only with a limit set): count a crossing of the limit (MemoryLimitHits) and, near or
    /// past it, reserve free pages for release as scavengeIfNeeded does (true: the caller
    /// calls finishScavenge once it has let go of the lock).
    func checkMemoryLimit() -> Bool {
        let over = residentPages > pointee.memoryLimitPages
        if over && !locked.pointee.overMemoryLimit { locked.pointee.memoryLimitHits &+= 1 }
        locked.pointee.overMemoryLimit = over
        return nearMemoryLimit && scavengeIfNeeded()
    }

    /// Reserve a batch of at most `maxPages` of the excess over `goal` (-1: the retain goal)
    /// (I3). Caller holds the heap lock and has checked that no batch is in flight.
    private func reserveScavengeBatch(maxPages: Int, goal: Int = -1) -> Bool {
        let excess = freeUnscavengedPages &- (goal < 0 ? retainGoalPages : goal)
        if excess <= 0 || maxPages <= 0 { return false }
        let n = withUnsafeMutablePointer(to: &locked.pointee.scavengeBatch) {
            locked.pointee.pages.scavenge(maxPages: Swift.min(excess, maxPages), into: $0)
        }
        return n != 0
    }

    /// Release the batch scavengeIfNeeded reserved: madvise without the heap lock, then, under
    /// it, free the pages as scavenged (or, where the kernel refused, as resident). Caller
    /// holds no allocator lock; the batch is its own until it is given back here (I3).
    /// A full batch is followed by the next until the excess over `goal` (-1: the retain
    /// goal) is gone or `budget` pages are released: one release, as the policy asked for,
    /// in pieces of at most 8 runs. Returns the pages released. `background`: the thread's
    /// work (counted apart).
    @discardableResult
    func finishScavenge(goal: Int = -1, budget: Int = Int.max, background: Bool = false) -> Int {
        var released = 0
        while true {
            let batch = locked.pointee.scavengeBatch
            var ok = InlineArray<8, Bool>(repeating: false)
            for i in 0..<batch.count {
                ok[i] = sysUnused(UnsafeMutableRawPointer(bitPattern: batch.base[i])!, size: batch.pages[i] &* pageSize)
            }
            pointee.lock.lock()
            var failed = false
            var done = 0
            for i in 0..<batch.count {
                locked.pointee.pages.free(base: batch.base[i], npages: batch.pages[i], released: ok[i])
                if ok[i] { done &+= batch.pages[i] }
                failed = failed || !ok[i]
            }
            locked.pointee.pages.scavengedTotal &+= done
            if background { locked.pointee.backgroundScavengedTotal &+= done }
            released &+= done
            locked.pointee.scavengeBatch = ScavengeBatch()
            let again = batch.count == ScavengeBatch.capacity && !failed
                && reserveScavengeBatch(maxPages: budget &- released, goal: goal)
            pointee.lock.unlock()
            if !again { return released }
        }
    }

    /// Release free pages down to `goal` (-1: the retain goal), at most `budget` of them,
    /// without holding the heap lock across madvise (I3). The background thread's release;
    /// returns the pages released (0 when another thread's batch is in flight: it is
    /// releasing already).
    @discardableResult
    func releaseFreePages(goal: Int = -1, budget: Int = Int.max, background: Bool = false) -> Int {
        pointee.lock.lock()
        let reserved = locked.pointee.scavengeBatch.count == 0 && reserveScavengeBatch(maxPages: budget, goal: goal)
        pointee.lock.unlock()
        return reserved ? finishScavenge(goal: goal, budget: budget, background: background) : 0
    }

    /// In a forked child (world stopped): a batch some parent thread was releasing goes back
    /// to the heap unreleased — that thread does not exist here.
    func abandonScavengeBatchInChild() {
        let batch = locked.pointee.scavengeBatch
        for i in 0..<batch.count {
            locked.pointee.pages.free(base: batch.base[i], npages: batch.pages[i])
        }
        locked.pointee.scavengeBatch = ScavengeBatch()
    }
}

/// Free runs reserved for release by one scavenge (I3): allocated in the page allocator, so
/// that nothing can be placed in them while madvise runs without the heap lock; counted
/// apart from every span (MHeap.pagesInUse).
package struct ScavengeBatch {
    static let capacity = 8
    var base: InlineArray<8, UInt> = InlineArray(repeating: 0)
    var pages: InlineArray<8, Int> = InlineArray(repeating: 0)
    var count = 0
    var totalPages = 0
    package init() {}
}

// MARK: - malloc_trim

/// malloc_trim: flush every mcache and page cache (each P taken in turn), sweep every
/// mcentral, release all free pages. Returns pages released to the OS.
func trimHeap() -> Int {
    guard let h = theHeap() else { return 0 }
    h.flushCachesForTrim()
    h.pointee.lock.lock()
    let n = h.locked.pointee.pages.scavenge(maxPages: Int.max)
    h.pointee.lock.unlock()
    // A sweep may have found a bad free: report it now that nothing is held.
    reportDeferred()
    return n
}

extension UnsafeMutablePointer where Pointee == MHeap {
    /// trim's first half (also the background thread's once the program is idle): every P's
    /// mcache, stack cache and page cache flushed, each P taken in turn; free large stacks
    /// given back; every mcentral swept, its empty spans returned to the heap. Caller holds
    /// nothing; a bad free a sweep finds is deferred (Report.swift).
    func flushCachesForTrim() {
        let h = self
        // Meanwhile other threads take fallback Ps only.
        h.blockCPUProcs()
        for i in 0..<h.pointee.nprocs {
            let slot = h.acquireP(at: i)
            // releaseAll flushes the page cache too; a P without an mcache has made no span
            // through mcentral, but allocSpan may have been given it directly (tests).
            if let c = slot.mcache {
                h.flushStackCache(c)
                c.releaseAll(heap: h)
            } else {
                h.flushPageCache(slot)
            }
            h.releaseP(slot)
        }
        h.unblockCPUProcs()
        // Free large stacks waiting for reuse go back too (Stack.swift).
        h.releaseStackLarge()
        for i in 0..<numCentrals { h.central(at: i).reclaimAll(heap: h) }
    }
}

// MARK: - Mechanism (Go's pageAlloc.scavenge)

extension PageAlloc {

    /// Mark up to `maxPages` free, unscavenged pages as scavenged, highest addresses first, and
    /// (when releasesMemory) release each contiguous run with sysUnused. Returns pages scavenged.
    /// With `batch` (I3): instead, allocate up to ScavengeBatch.capacity such runs and record
    /// them there for the caller to release without the lock; returns the pages reserved.
    package mutating func scavenge(maxPages: Int, into batch: UnsafeMutablePointer<ScavengeBatch>? = nil) -> Int {
        if maxPages <= 0 || rangeCount == 0 || scavHint == 0 { return 0 }
        let leaf = summaryLevels &- 1
        var remaining = maxPages
        var pendingBase: UInt = 0   // the run not yet released: [pendingBase, pendingLimit)
        var pendingLimit: UInt = 0
        var stoppedAt: UInt = 0     // lowest page scavenged, if maxPages ran out
        var failedLimit: UInt = 0   // highest page whose release failed (it stays unscavenged)
        var done = 0
        var r = rangeCount
        walk: while r > 0 {
            r &-= 1
            let range = ranges![r]
            if range.base >= scavHint { continue }
            let top = range.limit < scavHint ? range.limit : scavHint
            let first = Self.chunkIndex(range.base)
            var c = Self.chunkIndex(top &- 1)
            while c >= first {
                if !summary(leaf, c).isNone {
                    let data = chunk(c)
                    let chunkBase = Self.chunkBase(c)
                    var below = pallocChunkPages
                    while true {
                        let (i, n) = data.pointee.scavengeHighestRun(below: below, maxPages: remaining)
                        if n == 0 { break }
                        let runBase = chunkBase &+ UInt(truncatingIfNeeded: i) &<< UInt(pageShift)
                        let runLimit = runBase &+ UInt(truncatingIfNeeded: n) &<< UInt(pageShift)
                        if let batch {
                            // Reserve the run (allocRange clears the scavenged bits just set).
                            scav &+= n
                            _ = allocRange(base: runBase, npages: n)
                            let k = batch.pointee.count
                            if k > 0 && batch.pointee.base[k &- 1] == runLimit {
                                batch.pointee.base[k &- 1] = runBase
                                batch.pointee.pages[k &- 1] &+= n
                            } else {
                                batch.pointee.base[k] = runBase
                                batch.pointee.pages[k] = n
                                batch.pointee.count = k &+ 1
                            }
                            batch.pointee.totalPages &+= n
                            done &+= n
                            remaining &-= n
                            below = i
                            if remaining == 0 || batch.pointee.count == ScavengeBatch.capacity {
                                stoppedAt = runBase
                                break walk
                            }
                            continue
                        }
                        if runLimit == pendingBase {
                            pendingBase = runBase
                        } else {
                            let failed = releaseRun(base: pendingBase, limit: pendingLimit)
                            done &-= failed.pages
                            if failed.limit > failedLimit { failedLimit = failed.limit }
                            pendingBase = runBase
                            pendingLimit = runLimit
                        }
                        scav &+= n
                        done &+= n
                        remaining &-= n
                        below = i
                        if remaining == 0 {
                            stoppedAt = runBase
                            break walk
                        }
                    }
                }
                c &-= 1
            }
        }
        let failed = releaseRun(base: pendingBase, limit: pendingLimit)
        done &-= failed.pages
        if failed.limit > failedLimit { failedLimit = failed.limit }
        // Everything at or above stoppedAt (0: everything) is now allocated or scavenged.
        scavHint = stoppedAt > failedLimit ? stoppedAt : failedLimit
        // A batch's pages are counted when they are released (finishScavenge).
        if batch == nil { scavengedTotal &+= done }
        checkInvariantsIfExpensive()
        return done
    }

    /// Release [base, limit) to the OS. If that fails the pages are put back to unscavenged;
    /// returns how many pages that was and the range's limit (0, 0 on success).
    private mutating func releaseRun(base: UInt, limit: UInt) -> (pages: Int, limit: UInt) {
        if base >= limit || !releasesMemory { return (0, 0) }
        if sysUnused(UnsafeMutableRawPointer(bitPattern: base)!, size: Int(truncatingIfNeeded: limit &- base)) {
            return (0, 0)
        }
        var pages = 0
        var addr = base
        while addr < limit {
            let ci = Self.chunkIndex(addr)
            let chunkLimit = Self.chunkBase(ci &+ 1)
            let end = limit < chunkLimit ? limit : chunkLimit
            let first = Self.chunkPageIndex(addr)
            let n = Int(truncatingIfNeeded: (end &- addr) &>> UInt(pageShift))
            chunk(ci).pointee.scavenged.clearRange(first, n)
            pages &+= n
            addr = end
        }
        scav &-= pages
        return (pages, limit)
    }

}
