// The generated size classes against the seed's table (Go 1.16's sizeclasses.go).
import Foundation
import Synchronization
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class SizeClassTests: XCTestCase {
    /// The fixture: the seed's table verbatim (header + 67 rows, each starting with "//").
    func fixtureLines() throws -> [String] {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "sizeclasses-go1.16", withExtension: "txt",
                                                  subdirectory: "Fixtures"))
        return try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func testGeneratedTableEqualsSeedRowByRow() throws {
        let lines = try fixtureLines()
        XCTAssertEqual(lines.count, 68)
        let rows = GoAllocator.sizeClasses
        XCTAssertEqual(rows.count, 67)
        for (i, line) in lines.dropFirst().enumerated() {
            let f = line.dropFirst(2).split(separator: " ").map(String.init)
            XCTAssertEqual(f.count, 7, line)
            let r = rows[i]
            XCTAssertEqual(Int(f[0]), r.sizeClass, line)
            XCTAssertEqual(Int(f[1]), r.bytesPerObject, line)
            XCTAssertEqual(Int(f[2]), r.bytesPerSpan, line)
            XCTAssertEqual(Int(f[3]), r.objects, line)
            XCTAssertEqual(Int(f[4]), r.tailWaste, line)
            XCTAssertEqual(f[5], String(format: "%.2f%%", 100 * r.maxWaste), line)
            XCTAssertEqual(Int(f[6]), r.minAlign, line)
        }
    }

    func testSizeClassesCommandPrintsTheSeedTable() throws {
        let exe = productsDirectory().appendingPathComponent("gomalloc")
        // `swift build` / `swift test` build the CLI next to the tests: missing is a failure.
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: exe.path), "\(exe.path) is not built: run `swift build`")
        guard FileManager.default.isExecutableFile(atPath: exe.path) else { return }
        let p = Process()
        p.executableURL = exe
        p.arguments = ["sizeclasses"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let printed = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        let expected = try fixtureLines().map { String($0.dropFirst(3)) }
        XCTAssertEqual(printed, expected)
    }

    /// The reference: the smallest class whose objects hold `n` bytes (0 counts as 1); with
    /// C's rule, a block of more than 8 bytes also needs a class whose size is a multiple of
    /// 16 (so 17...24 bytes skip the 24-byte class for the 32-byte one).
    private static let classSizes = GoAllocator.sizeClasses.map(\.bytesPerObject)
    private func smallestFittingClass(_ n: Int, cRule: Bool) -> Int {
        Self.classSizes.firstIndex { $0 >= Swift.max(n, 1) && (!cRule || n <= 8 || $0 % 16 == 0) }! + 1
    }

    func testEverySizeMapsToTheSmallestFittingClass() throws {
        // Any allocation initialises the heap and its tables.
        GoAllocator.deallocate(try XCTUnwrap(GoAllocator.allocate(byteCount: 1, alignment: 1)))
        let h = try XCTUnwrap(theHeap())
        var failures = 0
        for n in 0...32768 {
            let want = smallestFittingClass(n, cRule: false)
            let wantC = smallestFittingClass(n, cRule: true)
            // The one lookup both malloc paths use (over MHeap.fastClassTable).
            let got = (swift: h.sizeClass(for: n, cABI: false), c: h.sizeClass(for: n, cABI: true))
            if got.swift != want || got.c != wantC {
                XCTFail("size \(n): Swift class \(got.swift) (want \(want)), C class \(got.c) (want \(wantC))")
                failures += 1
                if failures == 10 { return }
            }
        }
        // The C rule in the reference itself: 17...24 bytes get 32, not 24.
        let size = { (c: Int) in GoAllocator.sizeClasses[c - 1].bytesPerObject }
        XCTAssertEqual(size(smallestFittingClass(17, cRule: true)), 32)
        XCTAssertEqual(size(smallestFittingClass(17, cRule: false)), 24)
        XCTAssertEqual(size(smallestFittingClass(8, cRule: true)), 8)
    }

    func testDivMulIsExactForEveryOffsetOfEverySpan() {
        for r in GoAllocator.sizeClasses {
            let m = UInt64(divMul(forSize: r.bytesPerObject))
            for off in 0..<r.bytesPerSpan {
                let q = Int((UInt64(off) &* m) >> 32)
                if q != off / r.bytesPerObject {
                    XCTFail("class \(r.sizeClass): offset \(off) gives \(q)")
                    return
                }
            }
        }
    }

    func testSpanClassPacksSizeClassAndNoscan() {
        XCTAssertEqual(numSpanClasses, 136)
        let s = SpanClass(sizeClass: 3, noscan: true)
        XCTAssertEqual(s.raw, 7)
        XCTAssertEqual(s.sizeClass, 3)
        XCTAssertTrue(s.noscan)
        XCTAssertFalse(SpanClass(sizeClass: 67, noscan: false).noscan)
        XCTAssertEqual(SpanClass(sizeClass: 67, noscan: true).index, 135)
    }
}

final class LayoutTests: XCTestCase {
    /// The fast paths index MCache's span array through a raw offset (MCache.allocSlot), and
    /// a P's counters follow its slot's padded header. The rseq section (gomalloc_sys.h)
    /// takes a P by storing 1 to the first 32-bit word of its slot: the owner.
    func testLayoutMatchesTheFastPathOffsets() {
        _ = GoAllocator.allocate(byteCount: 8, alignment: 8).map { GoAllocator.deallocate($0) }
        if let slot = theHeap()?.proc(0) {
            XCTAssertEqual(withUnsafePointer(to: slot.pointee.owner) { UnsafeRawPointer($0) }, UnsafeRawPointer(slot))
        } else {
            XCTFail("no heap")
        }
        XCTAssertEqual(MemoryLayout<Atomic<UInt32>>.size, 4)
        XCTAssertEqual(MemoryLayout<MCache>.offset(of: \MCache.alloc), 0)
        XCTAssertEqual(MemoryLayout<MCache>.offset(of: \MCache.retired), MCache.retiredOffset)
        XCTAssertLessThanOrEqual(MemoryLayout<MCentral>.size, MCentral.listsOffset)
        XCTAssertLessThanOrEqual(MCentral.listsOffset + MemoryLayout<CentralLists>.size, MHeap.centralStride)
        XCTAssertLessThanOrEqual(MemoryLayout<PSlot>.size, pSlotHeaderBytes)
        XCTAssertLessThanOrEqual(pSlotUsedBytes, pSlotStride)
        XCTAssertEqual(pSlotStride % 128, 0)
    }

    /// What any free reads of a span sits in its second cache line (line 1), followed there
    /// by the bitmaps: all three for one word per bitmap (64 objects or fewer), freeBits for
    /// two. Span metadata blocks keep 64-byte alignment.
    func testEverythingAFreeReadsSharesOneLineOfItsSpan() {
        // Fields are laid out in declaration order (MSpan.swift).
        let span = UnsafeMutablePointer<MSpan>.allocate(capacity: 1)
        span.initialize(to: MSpan())
        defer { span.deinitialize(count: 1); span.deallocate() }
        func offset(_ address: UnsafeRawPointer) -> Int { address - UnsafeRawPointer(span) }
        let line1 = [
            withUnsafePointer(to: &span.pointee.startAddr) { offset($0) },
            withUnsafePointer(to: span.pointee.location) { offset($0) },
            withUnsafePointer(to: span.pointee.freeIndexWord) { offset($0) },
            withUnsafePointer(to: &span.pointee.elemSizeWord) { offset($0) },
            withUnsafePointer(to: &span.pointee.divMul) { offset($0) },
            withUnsafePointer(to: span.pointee.state) { offset($0) },
            withUnsafePointer(to: &span.pointee.nelemsWord) { offset($0) },
            withUnsafePointer(to: span.pointee.fastFreeLimitWord) { offset($0) },
            withUnsafePointer(to: span.pointee.allocCountWord) { offset($0) },
            withUnsafePointer(to: &span.pointee.bitmapWordsWord) { offset($0) },
            withUnsafePointer(to: &span.pointee.ownedSpanClassByte) { offset($0) },
            withUnsafePointer(to: span.pointee.kindWord) { offset($0) },
            withUnsafePointer(to: span.pointee.spanClassWord) { offset($0) },
        ]
        for o in line1 { XCTAssertEqual(o / 64, 1, "a field the free paths read is at \(o), outside line 1") }
        XCTAssertEqual(withUnsafePointer(to: &span.pointee.npages) { offset($0) }, 0)
        XCTAssertLessThanOrEqual(MemoryLayout<MSpan>.size, 104)
        XCTAssertEqual(MSpan.bitmapOffset, 104, "one-word bitmaps (3 x 8 bytes) end line 1")
        for words in [0, 1, 2, 4, 8, 16] {
            XCTAssertEqual(MSpan.blockBytes(words: words) % 64, 0)
            XCTAssertGreaterThanOrEqual(MSpan.blockBytes(words: words), MSpan.bitmapOffset + 24 * words)
        }
        XCTAssertEqual(MSpan.blockBytes(words: 1), 128)
    }
}
