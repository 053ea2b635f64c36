// Sys.swift — Go's sys* memory-state transitions over mmap, mprotect and madvise.
//
// Role: the only Swift file that asks the OS for memory. Memory moves between Go's states:
//   None --sysReserve--> Reserved --sysMap--> Ready --sysUnused--> Scavenged --(touch)--> Ready
//   (Go's sysUsed, Scavenged -> Ready, has nothing to do on Linux: touching the pages is enough.)
//   and any state --sysFree--> None. Metadata comes Ready at once from sysAlloc. A large
//   stack's lowest page may go Ready --sysGuard--> inaccessible --sysUnguard--> Ready.
// Go counterpart: mem_linux.go, mem.go.
// Invariants:
//   I1. A hint is only a hint: no call uses MAP_FIXED, so sanitizers' ranges are never clobbered.
//   I2. Scavenged memory reads as zero when touched again (MADV_DONTNEED on private anonymous).
// Concurrency: stateless; safe from any thread.
// Failure: every function returns nil / false on failure and never traps. In hosted test
//   builds a fault injector can make the next N reservations or commits fail, or every Nth
//   call of any kind (madvise and guards too), or every call past a byte budget.
import CGoMallocSys
import Synchronization

#if GOMALLOC_HOSTED
/// Test seam: the number of upcoming sysReserve/sysMap/sysAlloc calls that should fail.
package let sysFaultsPending = Atomic<Int>(0)
/// Test seam: when N > 0, every Nth call of sysReserve/sysMap/sysAlloc/sysUnused/sysGuard
/// fails (counted across all of them).
package let sysFaultEvery = Atomic<Int>(0)
private let sysCallsCounted = Atomic<Int>(0)
/// Test seam: when >= 0, the bytes of memory sysMap/sysAlloc may still commit; a call that
/// would exceed it fails. -1: no budget.
package let sysFaultByteBudget = Atomic<Int>(-1)
/// Test seam: how many sys* calls failed because of injection.
package let sysFaultsInjected = Atomic<Int>(0)

/// Whether this call should fail. `bytes`: what it would obtain (0 for madvise and guards).
@inline(__always)
private func injectFault(bytes: Int = 0) -> Bool {
    var pending = sysFaultsPending.load(ordering: .relaxed)
    while pending > 0 {
        let (exchanged, original) = sysFaultsPending.compareExchange(
            expected: pending, desired: pending - 1, ordering: .relaxed)
        if exchanged { sysFaultsInjected.add(1, ordering: .relaxed); return true }
        pending = original
    }
    let every = sysFaultEvery.load(ordering: .relaxed)
    if every > 0 && sysCallsCounted.add(1, ordering: .relaxed).newValue % every == 0 {
        sysFaultsInjected.add(1, ordering: .relaxed)
        return true
    }
    if bytes > 0 {
        var budget = sysFaultByteBudget.load(ordering: .relaxed)
        while budget >= 0 {
            if budget < bytes { sysFaultsInjected.add(1, ordering: .relaxed); return true }
            let (exchanged, original) = sysFaultByteBudget.compareExchange(
                expected: budget, desired: budget - bytes, ordering: .relaxed)
            if exchanged { break }
            budget = original
        }
    }
    return false
}
#else
@inline(__always)
private func injectFault(bytes: Int = 0) -> Bool { false }
#endif

/// Reserve address space (PROT_NONE) near `hint`; nil if the OS refuses.
func sysReserve(hint: UInt, size: Int) -> UnsafeMutableRawPointer? {
    if injectFault() { return nil }  // address space, not memory: outside the byte budget
    return gm_sys_reserve(UnsafeMutableRawPointer(bitPattern: hint), size)
}

/// Reserved -> Ready: make a reserved range readable and writable.
func sysMap(_ base: UnsafeMutableRawPointer, size: Int) -> Bool {
    if injectFault(bytes: size) { return false }
    return gm_sys_commit(base, size) == 0
}

/// Ready -> Scavenged: return the physical pages; the range stays mapped and reads as zero.
@discardableResult
func sysUnused(_ base: UnsafeMutableRawPointer, size: Int) -> Bool {
    if injectFault() { return false }
    return gm_sys_release(base, size) == 0
}

/// Any -> None.
@discardableResult
func sysFree(_ base: UnsafeMutableRawPointer, size: Int) -> Bool {
    gm_sys_unmap(base, size) == 0
}

/// Fresh zeroed read-write memory for metadata (never user objects); nil on failure.
func sysAlloc(size: Int) -> UnsafeMutableRawPointer? {
    if injectFault(bytes: size) { return nil }
    return gm_sys_map_anon(size)
}

/// A large zeroed read-write table whose pages cost memory only once written (the arena
/// map); nil on failure.
func sysAllocSparse(size: Int) -> UnsafeMutableRawPointer? {
    if injectFault() { return nil }  // costs only the pages written: outside the byte budget
    return gm_sys_map_sparse(size)
}

/// Ready -> Ready elsewhere: move the pages of a range onto another range of ours without
/// copying; the source reads as zero afterwards (Scavenged). false if the kernel refuses.
func sysMovePages(from: UInt, to: UInt, size: Int) -> Bool {
    if injectFault() { return false }
    return gm_sys_move_pages(UnsafeMutableRawPointer(bitPattern: from), UnsafeMutableRawPointer(bitPattern: to), size) == 0
}

/// Ready -> guard: make a stack's lowest page inaccessible (Go's osStackAlloc has nothing to
/// do on Linux; our optional guard pages are this). false if the kernel refuses (its limit
/// on mappings: each guard splits a mapping in two).
func sysGuard(_ base: UInt, size: Int) -> Bool {
    if injectFault() { return false }
    return gm_sys_protect_none(UnsafeMutableRawPointer(bitPattern: base), size) == 0
}

/// Guard -> Ready: the guard page readable and writable again, its contents unchanged.
func sysUnguard(_ base: UInt, size: Int) -> Bool {
    gm_sys_commit(UnsafeMutableRawPointer(bitPattern: base), size) == 0
}
