// The statistics in their machine forms (MemStats.swift): the JSON of
// GoAllocator.statisticsJSON() / gomalloc_stats_json parses and matches GoAllocator.statistics()
// figure by figure, the figures add up, the formatter keeps snprintf's contract, and
// malloc_info's XML parses.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Glibc
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class MemStatsJSONTests: XCTestCase {
    /// Blocks of several classes (scan and noscan) and a large one, held by the test.
    private var held: [UnsafeMutableRawPointer] = []

    override func setUp() {
        for size in [8, 24, 100, 1000, 5000, 32768] {
            for _ in 0..<10 {
                held.append(GoAllocator.allocate(byteCount: size, alignment: 8)!)
                held.append(GoAllocator.allocate(byteCount: size, alignment: 8, containsPointers: false)!)
            }
        }
        // Some frees, so that Frees is not zero.
        for _ in 0..<5 { GoAllocator.deallocate(held.removeLast()) }
        held.append(GoAllocator.allocate(byteCount: 3 << 20, alignment: 16)!)
    }

    override func tearDown() {
        for p in held { GoAllocator.deallocate(p) }
        held = []
    }

    private func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try XCTUnwrap(object as? [String: Any], "not a JSON object: \(text)", file: file, line: line)
    }

    func testJSONMatchesStatisticsFigureByFigure() throws {
        // Swift's own allocations (the arrays, the String) use the system allocator, not this
        // heap: nothing between the two snapshots allocates here.
        let s = GoAllocator.statistics()
        let text = GoAllocator.statisticsJSON()
        XCTAssertFalse(text.contains("\n"), "one line")
        let j = try parse(text)
        let expected: [String: UInt64] = [
            "HeapAlloc": s.heapAlloc, "HeapAllocScan": s.heapAllocScan, "HeapAllocNoscan": s.heapAllocNoscan,
            "HeapSys": s.heapSys, "HeapIdle": s.heapIdle, "HeapInuse": s.heapInuse,
            "HeapReleased": s.heapReleased, "HeapObjects": s.heapObjects,
            "StackInuse": s.stackInuse, "StackSys": s.stackSys, "StackAlloc": s.stackAlloc,
            "StackCached": s.stackCached, "StackPoolFree": s.stackPoolFree, "StackLargeFree": s.stackLargeFree,
            "StackAllocs": s.stackAllocs, "StackFrees": s.stackFrees, "MetadataSys": s.metadataSys,
            "ScavengerReleasedBytes": s.scavengerReleasedBytes,
            "ScavengerBackgroundReleasedBytes": s.scavengerBackgroundReleasedBytes,
            "ScavengerThread": s.scavengerThreadRunning ? 1 : 0,
            "MemoryLimit": s.memoryLimit, "MemoryLimitHits": s.memoryLimitHits,
            "Mallocs": s.mallocs, "Frees": s.frees,
            "TinyAllocs": s.tinyAllocs, "TinyFrees": s.tinyFrees, "TinyBlocks": s.tinyBlocks,
            "Ps": UInt64(s.processors), "CPUPs": UInt64(s.cpuBoundProcessors),
            "MCaches": UInt64(s.mcaches), "Arenas": UInt64(s.arenas),
        ]
        XCTAssertEqual(Set(j.keys), Set(expected.keys).union(["BySize"]), "the JSON's keys")
        for (key, value) in expected {
            XCTAssertEqual((j[key] as? NSNumber)?.uint64Value, value, key)
        }
        let rows = try XCTUnwrap(j["BySize"] as? [[String: Any]])
        XCTAssertEqual(rows.count, s.bySize.count)
        for (row, c) in zip(rows, s.bySize) {
            XCTAssertEqual(Set(row.keys), ["Size", "Mallocs", "Frees", "NoscanMallocs", "NoscanFrees"])
            XCTAssertEqual((row["Size"] as? NSNumber)?.intValue, c.size, "class \(c.sizeClass)")
            XCTAssertEqual((row["Mallocs"] as? NSNumber)?.uint64Value, c.mallocs, "class \(c.sizeClass)")
            XCTAssertEqual((row["Frees"] as? NSNumber)?.uint64Value, c.frees, "class \(c.sizeClass)")
            XCTAssertEqual((row["NoscanMallocs"] as? NSNumber)?.uint64Value, c.noscanMallocs, "class \(c.sizeClass)")
            XCTAssertEqual((row["NoscanFrees"] as? NSNumber)?.uint64Value, c.noscanFrees, "class \(c.sizeClass)")
        }
        XCTAssertGreaterThan(s.bySize[0].mallocs, 0, "the large block is counted in class 0")
    }

    func testStatisticsAddUp() {
        let s = GoAllocator.statistics()
        XCTAssertEqual(s.heapSys, s.heapIdle + s.heapInuse)
        XCTAssertLessThanOrEqual(s.heapReleased, s.heapIdle)
        XCTAssertEqual(s.mallocs - s.frees, s.heapObjects)
        XCTAssertGreaterThanOrEqual(s.heapAlloc - s.heapAllocScan - s.heapAllocNoscan, 3 << 20,
                                    "HeapAlloc - scan - noscan: the large objects, the held one among them")
        XCTAssertLessThanOrEqual(s.heapAlloc, s.heapInuse)
        XCTAssertEqual(s.mallocs, s.bySize.reduce(0) { $0 + $1.mallocs } + s.tinyAllocs)
        XCTAssertEqual(s.frees, s.bySize.reduce(0) { $0 + $1.frees } + s.tinyFrees)
    }

    /// ScavengerReleasedBytes counts the scavenger's work: a trim that releases pages adds
    /// at least what HeapReleased gained, and the counter never goes down.
    func testScavengerReleasedBytesCountsTrim() {
        GoAllocator.trim()
        let start = GoAllocator.statistics()
        let big = GoAllocator.allocate(byteCount: 8 << 20, alignment: 16)!
        memset(big, 1, 8 << 20)
        GoAllocator.deallocate(big)
        let before = GoAllocator.statistics()
        let released = GoAllocator.trim()
        let after = GoAllocator.statistics()
        XCTAssertEqual(after.scavengerReleasedBytes - before.scavengerReleasedBytes, UInt64(released),
                       "trim's pages are the scavenger's work")
        XCTAssertGreaterThanOrEqual(after.scavengerReleasedBytes - start.scavengerReleasedBytes, UInt64(8 << 20),
                                    "the freed block's pages were released (at its free or by trim)")
        XCTAssertLessThanOrEqual(after.heapReleased, after.heapIdle)
    }

    /// snprintf's contract: the full length whatever the capacity; at most capacity - 1 bytes
    /// and a NUL; capacity 0 writes nothing.
    func testSnprintfContract() {
        let m = readMemStats()
        let n = formatMemStatsJSON(m, into: nil, capacity: 0)
        XCTAssertGreaterThan(n, 100)
        var sentinel: [UInt8] = [0xAA, 0xAA]
        XCTAssertEqual(sentinel.withUnsafeMutableBufferPointer { formatMemStatsJSON(m, into: $0.baseAddress, capacity: 0) }, n)
        XCTAssertEqual(sentinel, [0xAA, 0xAA], "capacity 0 writes nothing")

        var full = [UInt8](repeating: 0xAA, count: n + 1)
        XCTAssertEqual(full.withUnsafeMutableBufferPointer { formatMemStatsJSON(m, into: $0.baseAddress, capacity: n + 1) }, n)
        XCTAssertEqual(full[n], 0, "NUL-terminated")
        XCTAssertFalse(full[..<n].contains(0))
        for capacity in [1, 2, 17, n / 2, n] {
            var small = [UInt8](repeating: 0xAA, count: capacity + 1)
            let r = small.withUnsafeMutableBufferPointer { formatMemStatsJSON(m, into: $0.baseAddress, capacity: capacity) }
            XCTAssertEqual(r, n, "capacity \(capacity): the length needed")
            XCTAssertEqual(small[capacity - 1], 0, "capacity \(capacity): NUL at the end")
            XCTAssertEqual(Array(small[..<(capacity - 1)]), Array(full[..<(capacity - 1)]), "capacity \(capacity): a prefix")
            XCTAssertEqual(small[capacity], 0xAA, "capacity \(capacity): nothing past the buffer")
        }
        // The C entry point is the same formatter over a fresh snapshot.
        XCTAssertEqual(gmStatsJSON(nil, 0), formatMemStatsJSON(readMemStats(), into: nil, capacity: 0))
    }

    func testMallocInfoIsGlibcShapedXML() throws {
        let m = readMemStats()
        let n = formatMallocInfo(m, into: nil, capacity: 0)
        var bytes = [UInt8](repeating: 0, count: n + 1)
        XCTAssertEqual(bytes.withUnsafeMutableBufferPointer { formatMallocInfo(m, into: $0.baseAddress, capacity: n + 1) }, n)
        let text = String(decoding: bytes[..<n], as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n"), text)
        XCTAssertTrue(text.hasSuffix("</malloc>\n"), text)
        final class Collect: NSObject, XMLParserDelegate {
            var elements: [(String, [String: String])] = []
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?,
                        qualifiedName: String?, attributes: [String: String] = [:]) {
                elements.append((name, attributes))
            }
        }
        let parser = XMLParser(data: Data(text.utf8))
        let collect = Collect()
        parser.delegate = collect
        XCTAssertTrue(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? ""): \(text)")
        let sizes = collect.elements.filter { $0.0 == "size" }
        let live = m.classMallocs.indices.filter { $0 != 0 && m.classMallocs[$0] != m.classFrees[$0] }
        XCTAssertEqual(sizes.count, live.count)
        for (e, c) in zip(sizes, live) {
            XCTAssertEqual(e.1["to"], String(m.classSize[c]))
            XCTAssertEqual(e.1["count"], String(m.classMallocs[c] - m.classFrees[c]))
        }
        let mmap = try XCTUnwrap(collect.elements.first { $0.0 == "total" && $0.1["type"] == "mmap" })
        XCTAssertEqual(mmap.1["size"], String(m.largeAllocBytes))
        XCTAssertEqual(gmMallocInfoFormat(1, nil, 0), -1, "options != 0")
        XCTAssertEqual(errno, Glibc.EINVAL)
    }
}
