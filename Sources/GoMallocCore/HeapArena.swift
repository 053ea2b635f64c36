// HeapArena.swift — 64 MiB heap arenas: reserved at Go's hint addresses, mapped page -> span.
//
// Role: reserve address space from the OS in 64 MiB-aligned arenas, trying Go's hint
//   addresses first (0x00c0 << 32, then 0x01c0 << 32, ... as hints only, never MAP_FIXED),
//   and register each arena in the arena map (one flat table, as Go's on amd64) with its
//   page table (8192 span pointers, one per 8 KiB page).
// Go counterpart: malloc.go (arena hints, sysAlloc), mheap.go (heapArena, arenaIndex).
// Invariants:
//   I1. Every registered arena is 64 MiB-aligned, lies below 2^48, and has a page table.
//   I2. Arena map entries go from nil to non-nil only, never back.
//   I3. [currentBase, currentEnd) is reserved, registered and not yet committed.
// Concurrency: Guarded by the heap lock; the map is read lock-free (I2): its words are
//   stored with release and loaded with acquire (mapLoad, mapStore).
// Failure: reserve returns nil when the OS refuses address space or metadata.
import CGoMallocSys
import Synchronization

/// Per-arena metadata: the page -> span table (Go's heapArena.spans), 8192 entries.
typealias ArenaPageTable = UnsafeMutablePointer<UnsafeMutablePointer<MSpan>?>

/// A word of the arena map or of a page table, read without the heap lock: acquiring loads
/// (what a reader finds there — a page table, a span — was set up before the
/// word was stored) and releasing stores (under the heap lock).
@inline(__always)
func mapLoad<T>(_ p: UnsafeMutablePointer<T>) -> UInt {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: Atomic<UInt>.self).pointee.load(ordering: .acquiring)
}

@inline(__always)
func mapStore<T>(_ p: UnsafeMutablePointer<T>, _ value: UInt) {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: Atomic<UInt>.self).pointee.store(value, ordering: .releasing)
}

/// Address space bookkeeping: hints, the current reservation, the registered arenas.
struct ArenaSet {
    /// Next hint index (Go's arenaHints list, walked in order). Guarded by: heap lock.
    var hintIndex: Int = 0
    /// Where the next reservation is tried for the current hint. Guarded by: heap lock.
    var hintAddr: UInt = 0
    /// Reserved but uncommitted address space at the end of the last reservation.
    var currentBase: UInt = 0
    var currentEnd: UInt = 0
    /// Number of arenas registered. Guarded by: heap lock.
    var count: Int = 0
    /// Lowest and highest registered arena (for walks and the heap view).
    var lowest: UInt = UInt.max
    var highest: UInt = 0
    /// Bytes of metadata (arena map and page tables). Guarded by: heap lock.
    var metadataBytes: Int = 0

    /// Go's hints on amd64 and arm64 Linux: i << 40 | 0x00c0 << 32 for i = 0...0x7f.
    static func hint(_ i: Int) -> UInt {
        UInt(i) << 40 | (0x00c0 << 32)
    }
}

extension UnsafeMutablePointer where Pointee == MHeap {
    /// Reserve at least `size` bytes (rounded to whole arenas), arena-aligned, and register
    /// the arenas. Returns the range, or nil. Caller holds the heap lock.
    func reserveArenas(atLeast size: UInt) -> (UInt, UInt)? {
        let n = (size &+ UInt(heapArenaBytes) &- 1) & ~(UInt(heapArenaBytes) &- 1)
        var base: UInt = 0
        while locked.pointee.arenas.hintIndex < 0x80 && base == 0 {
            if locked.pointee.arenas.hintAddr == 0 { locked.pointee.arenas.hintAddr = ArenaSet.hint(locked.pointee.arenas.hintIndex) }
            let h = locked.pointee.arenas.hintAddr
            if h &+ n > (UInt(1) << UInt(heapAddrBits)) || h &+ n < h {
                locked.pointee.arenas.hintIndex &+= 1; locked.pointee.arenas.hintAddr = 0; continue
            }
            // The OS refusing address space is out of memory, not a taken hint: keep the hint.
            guard let p = sysReserve(hint: h, size: Int(n)) else { return nil }
            if UInt(bitPattern: p) == h {
                base = h
                locked.pointee.arenas.hintAddr = h &+ n
                break
            }
            // Something else lives there: move to the next hint.
            sysFree(p, size: Int(n))
            locked.pointee.arenas.hintIndex &+= 1
            locked.pointee.arenas.hintAddr = 0
        }
        if base == 0, locked.pointee.arenas.highest != 0 {
            // Hints used up: try to continue right after our highest arena.
            let h = locked.pointee.arenas.highest &+ UInt(heapArenaBytes)
            guard let p = sysReserve(hint: h, size: Int(n)) else { return nil }
            if UInt(bitPattern: p) == h && h &+ n <= (UInt(1) << UInt(heapAddrBits)) {
                base = h
            } else {
                sysFree(p, size: Int(n))
            }
        }
        if base == 0 {
            // Anywhere, over-reserving to align by hand.
            guard let p = sysReserve(hint: 0, size: Int(n) &+ heapArenaBytes) else { return nil }
            let raw = UInt(bitPattern: p)
            let aligned = (raw &+ UInt(heapArenaBytes) &- 1) & ~(UInt(heapArenaBytes) &- 1)
            if aligned > raw { sysFree(p, size: Int(aligned &- raw)) }
            let tail = (raw &+ n &+ UInt(heapArenaBytes)) &- (aligned &+ n)
            if tail > 0 { sysFree(UnsafeMutableRawPointer(bitPattern: aligned &+ n)!, size: Int(tail)) }
            if aligned &+ n > (UInt(1) << UInt(heapAddrBits)) {
                sysFree(UnsafeMutableRawPointer(bitPattern: aligned)!, size: Int(n))
                return nil
            }
            base = aligned
        }
        // Register every arena of the range.
        var a = base
        while a < base &+ n {
            if !registerArena(a) {
                // Keep what was registered; give back the rest.
                sysFree(UnsafeMutableRawPointer(bitPattern: a)!, size: Int(base &+ n &- a))
                return a > base ? (base, a &- base) : nil
            }
            a &+= UInt(heapArenaBytes)
        }
        return (base, n)
    }

    /// Arena map indices from the lowest registered arena to the highest (empty when none;
    /// some between may be unregistered). Caller holds the heap lock or stops the world.
    var registeredArenaIndices: Range<Int> {
        let a = locked.pointee.arenas
        if a.count == 0 { return 0..<0 }
        return Int(a.lowest >> UInt(logHeapArenaBytes))..<Int(a.highest >> UInt(logHeapArenaBytes)) &+ 1
    }

    private func registerArena(_ a: UInt) -> Bool {
        let ai = Int(a >> UInt(logHeapArenaBytes))
        let entry = pointee.arenaMap + ai
        if entry.pointee == nil {
            let bytes = pagesPerArena * MemoryLayout<UInt>.stride
            guard let m = sysAlloc(size: bytes) else { return false }
            locked.pointee.arenas.metadataBytes &+= bytes
            // The map's OS page holding this entry becomes resident with its first entry.
            let perPage = physPageSize / MemoryLayout<UInt>.stride
            let first = pointee.arenaMap + (ai & ~(perPage &- 1))
            var untouched = true
            for k in 0..<perPage where first[k] != nil { untouched = false; break }
            if untouched {
                locked.pointee.arenas.metadataBytes &+= perPage &* MemoryLayout<UInt>.stride
            }
            // Zero-filled memory is a table of nil spans.
            mapStore(entry, UInt(bitPattern: m))
            locked.pointee.arenas.count &+= 1
            locked.pointee.arenas.lowest = Swift.min(locked.pointee.arenas.lowest, a)
            locked.pointee.arenas.highest = Swift.max(locked.pointee.arenas.highest, a)
        }
        return true
    }
}
