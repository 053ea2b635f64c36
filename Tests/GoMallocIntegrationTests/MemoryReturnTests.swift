// MemoryReturnTests.swift — memory going back to the OS under the drop-in library, checked
// against the kernel (Tests/CPrograms/memory_return.c): malloc_trim, the background
// scavenger after the program goes idle (and in a forked child), no thread for a small
// heap, GOMALLOC_SCAVENGE=off and eager, and GOMALLOC_MEMORY_LIMIT. The idle cases wait for
// a condition (every free page released), polled by the program, never for a set time.
import Foundation
import XCTest

final class MemoryReturnTests: XCTestCase {
    /// Run memory_return.c in `mode` (DropIn.runProgram: exit 0, `OK memory_return`, no stderr).
    private func run(_ mode: String, env extra: [String: String] = [:],
                     file: StaticString = #filePath, line: UInt = #line) throws {
        try DropIn.runProgram("memory_return.c", [mode], env: extra, timeout: 120, file: file, line: line)
    }

    /// After freeing 255/256 of a 256 MiB heap, malloc_trim(0) releases every free page:
    /// HeapIdle == HeapReleased, our arenas' resident bytes in /proc/self/smaps equal the
    /// in-use bytes, and RSS is within 40 MiB of the start.
    func testTrimReleasesEveryFreePageAsSmapsShows() throws { try run("trim") }

    /// The same heap left alone: the background thread (gomalloc-scav) releases every free
    /// page once a second has passed without a heap call; smaps agrees, RSS within 40 MiB.
    func testIdleProgramGetsItsMemoryReleasedByTheThread() throws { try run("idle") }

    /// Ps taken by compare-and-swap only: the same.
    func testIdleReleaseWithoutRseq() throws { try run("idle", env: ["GOMALLOC_RSEQ": "0"]) }

    /// A forked child has no scavenger thread until its first allocation starts its own,
    /// which then releases the child's idle heap; the parent's keeps running.
    func testForkedChildRestartsTheThreadLazily() throws { try run("fork") }

    /// A heap that never maps 64 MiB gets no thread.
    func testSmallHeapGetsNoThread() throws { try run("small") }

    /// GOMALLOC_SCAVENGE=off: nothing released and no thread until malloc_trim.
    func testScavengeOffReleasesOnlyOnTrim() throws { try run("off", env: ["GOMALLOC_SCAVENGE": "off"]) }

    /// GOMALLOC_SCAVENGE=eager: the frees release every free page themselves, no thread.
    func testScavengeEagerReleasesOnFree() throws { try run("eager", env: ["GOMALLOC_SCAVENGE": "eager"]) }

    /// GOMALLOC_MEMORY_LIMIT=64M: 96 MiB live still succeeds (soft), the hit is counted,
    /// and after the frees the resident heap is under the limit without a trim.
    func testMemoryLimitIsSoftAndReleasesAtOnce() throws { try run("limit", env: ["GOMALLOC_MEMORY_LIMIT": "64M"]) }
}
