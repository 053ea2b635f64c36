// Scavenger.swift — returning free pages to the OS so that RSS follows the live heap.
//
// Role: Go runs a background scavenger that keeps retained free memory near 10% over the
//   heap goal. A malloc has no collector and should not start threads of its own, so here
//   the same policy runs inline on the heap's free path: when free-but-resident pages exceed
//   retainPercent of the in-use pages plus one chunk of slack, the excess (highest
//   addresses first, as Go does) is released with MADV_DONTNEED. malloc_trim releases all.
// Go counterpart: mgcscavenge.go (bgscavenge, scavengeGoal, pageAlloc.scavenge).
// Invariants:
//   I1. After scavengeIfNeeded: freeUnscavengedPages <= retained goal + one chunk.
//   I2. A page is never both allocated and scavenged (the page allocator clears the bit
//       when it hands the page out; it is then known to read as zero).
// Concurrency: Guarded by the heap lock (caller holds it).
// Failure: a failed madvise leaves pages resident; nothing else changes.

extension MHeap {
    /// Pages we may keep free and resident.
    var retainGoalPages: Int { pagesInUse &* retainPercent / 100 &+ pallocChunkPages }

    /// Release the excess over the retain goal. Caller holds the heap lock.
    mutating func scavengeIfNeeded() {
        let free = freeUnscavengedPages
        let goal = retainGoalPages
        if free <= goal &+ pallocChunkPages { return }
        scavengedTotal &+= pages.scavenge(maxPages: free &- goal)
    }

    /// Release every free page (malloc_trim). Returns pages released. Caller holds the lock.
    mutating func scavengeAll() -> Int {
        let n = pages.scavenge(maxPages: Int.max)
        scavengedTotal &+= n
        return n
    }
}
