// Scavenger.swift — returning free pages to the OS so that RSS follows the live heap.
//
// Role: Go runs a background scavenger that keeps retained free memory near 10% over the
//   heap goal, paced so that it never takes more than ~1% of a CPU. A malloc has no collector
//   and should not start threads of its own, so here the policy runs inline on the heap's
//   free path: when free-but-resident pages exceed retainPercent of the in-use pages plus one
//   chunk of slack, the excess (highest addresses first, as Go does) is released with
//   MADV_DONTNEED. Like Go's pacing (and mimalloc's purge delay), release is paced: at most
//   once per scavengePeriod, so memory freed and reused within a few milliseconds (a large
//   buffer replaced by another) is not released and faulted back in each time — unless the
//   excess grows past twice the goal plus 32 MiB, which is released at once. malloc_trim
//   releases everything.
//   Limit: without a thread of our own, a program that frees a lot and then makes no more
//   heap calls keeps the excess accumulated since the last release (at most the bound above).
// Go counterpart: mgcscavenge.go (bgscavenge, scavengeGoal, pageAlloc.scavenge).
// Invariants:
//   I1. After scavengeIfNeeded: freeUnscavengedPages <= retained goal + one chunk.
//   I2. A page is never both allocated and scavenged (the page allocator clears the bit
//       when it hands the page out; it is then known to read as zero).
// Concurrency: Guarded by the heap lock (caller holds it).
// Failure: a failed madvise leaves pages resident; nothing else changes.
import CGoMallocSys

extension MHeap {
    /// Pages we may keep free and resident.
    var retainGoalPages: Int { pagesInUse &* retainPercent / 100 &+ pallocChunkPages }

    /// Release the excess over the retain goal. Caller holds the heap lock.
    mutating func scavengeIfNeeded() {
        let free = freeUnscavengedPages
        let goal = retainGoalPages
        if free <= goal &+ pallocChunkPages { return }
        let now = gm_sys_nanotime()
        let urgent = free > 2 &* goal &+ 8 &* pallocChunkPages
        if !urgent && now &- lastScavenge < MHeap.scavengePeriodNanos { return }
        lastScavenge = now
        scavengedTotal &+= pages.scavenge(maxPages: free &- goal)
    }

    /// Go paces its scavenger to about 1% of a CPU; 50 ms between releases is our equivalent.
    static let scavengePeriodNanos: UInt64 = 50_000_000

    /// Release every free page (malloc_trim). Returns pages released. Caller holds the lock.
    mutating func scavengeAll() -> Int {
        let n = pages.scavenge(maxPages: Int.max)
        scavengedTotal &+= n
        return n
    }
}
