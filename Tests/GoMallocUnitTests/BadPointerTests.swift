// Misuse is reported in one line naming the pointer, then the process aborts.
import Foundation
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted  // firstUnmappedInnerPage

final class BadPointerTests: XCTestCase {
    func expectAbort(_ message: String, file: StaticString = #filePath, line: UInt = #line,
                     _ body: () -> Void) {
        let r = runInChild(body)
        XCTAssertEqual(r.signal, SIGABRT, "child was not aborted; stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr, message + "\n", file: file, line: line)
    }

    func hex(_ p: UnsafeMutableRawPointer) -> String { "0x" + String(UInt(bitPattern: p), radix: 16) }

    func testDoubleFreeOfASmallObject() throws {
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 48, alignment: 8))
        expectAbort("gomalloc: free(): double free \(hex(p))") {
            GoAllocator.deallocate(p)
            GoAllocator.deallocate(p)
        }
        GoAllocator.deallocate(p)
    }

    func testDoubleFreeOfAnObjectInAnUncachedSpan() throws {
        // Fill a few spans so the first object's span is no longer the cached one.
        var ps: [UnsafeMutableRawPointer] = []
        for _ in 0..<3000 { ps.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 100, alignment: 8))) }
        let p = ps[0]
        expectAbort("gomalloc: free(): double free \(hex(p))") {
            GoAllocator.deallocate(p)
            GoAllocator.deallocate(p)
        }
        for q in ps { GoAllocator.deallocate(q) }
    }

    func testDoubleFreeOfALargeObject() throws {
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 100_000, alignment: 8))
        let q = try XCTUnwrap(GoAllocator.allocate(byteCount: 100_000, alignment: 8))
        expectAbort("gomalloc: free(): double free \(hex(p))") {
            GoAllocator.deallocate(p)
            GoAllocator.deallocate(p)
        }
        GoAllocator.deallocate(p)
        GoAllocator.deallocate(q)
    }

    func testInteriorPointer() throws {
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 64, alignment: 8))
        expectAbort("gomalloc: free(): invalid pointer \(hex(p + 8))") { GoAllocator.deallocate(p + 8) }
        let big = try XCTUnwrap(GoAllocator.allocate(byteCount: 1 << 20, alignment: 8))
        expectAbort("gomalloc: free(): invalid pointer \(hex(big + 8))") { GoAllocator.deallocate(big + 8) }
        // An inner page of a large block (whatever its page-map entry holds: nothing, or the
        // tombstone of a large block that started there before).
        expectAbort("gomalloc: free(): invalid pointer \(hex(big + 8192))") { GoAllocator.deallocate(big + 8192) }
        GoAllocator.deallocate(p)
        GoAllocator.deallocate(big)
    }

    func testForeignPointers() throws {
        let foreign = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)  // glibc's
        defer { foreign.deallocate() }
        expectAbort("gomalloc: free(): invalid pointer \(hex(foreign))") { GoAllocator.deallocate(foreign) }
        var local = 0
        withUnsafeMutablePointer(to: &local) { lp in
            let raw = UnsafeMutableRawPointer(lp)
            expectAbort("gomalloc: free(): invalid pointer \(hex(raw))") { GoAllocator.deallocate(raw) }
        }
    }
}
