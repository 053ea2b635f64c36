// HeapMapParserTests: the CLI's HeapDump parser on a small handwritten GOMALLOC_HEAPMAP dump
// (the format is in Sources/GoMallocCore/HeapMap.swift), its refusals, the text summary and
// the SVG (well-formed, with the legend). The dump of a real program is HeapMapTests in
// GoMallocIntegrationTests.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import gomalloc

final class HeapMapParserTests: XCTestCase {
    static let dump = """
        gomalloc-heapmap 1 pagesize 8192 arenapages 16
        heap committed 12 inuse 7 free 3 released 2 stack 2
        arena 0xc000000000 16
        small 9 112 1
        small 9 112 1
        small 44 4096 1
        large 2
        stack 2
        free 3
        released 2
        uncommitted 4
        totals small 3 large 2 stack 2 free 3 released 2 uncommitted 4 spans 5
        end

        """

    func testParsesAHandwrittenDump() throws {
        let d = try HeapDump(parsing: Self.dump)
        XCTAssertEqual(d.pageSize, 8192)
        XCTAssertEqual(d.arenaPages, 16)
        XCTAssertEqual(d.heap, ["committed": 12, "inuse": 7, "free": 3, "released": 2, "stack": 2])
        XCTAssertEqual(d.arenas.count, 1)
        XCTAssertEqual(d.arenas[0].base, 0xc0_0000_0000)
        XCTAssertEqual(d.arenas[0].runs.first, HeapDump.Run(kind: .small, sizeClass: 9, objectSize: 112, pages: 1))
        XCTAssertEqual(d.pagesByKind, [.small: 3, .large: 2, .stack: 2, .free: 3, .released: 2, .uncommitted: 4])
        XCTAssertEqual(d.pagesBySize, [112: 2, 4096: 1])
        XCTAssertEqual(d.spanCount, 5)
        XCTAssertEqual(d.totals["spans"], 5)
        for k in HeapDump.Kind.allCases { XCTAssertEqual(d.totals[k.rawValue], d.pagesByKind[k], k.rawValue) }
        XCTAssertEqual(d.arenas[0].pageKinds.count, 16)
    }

    func testRefusesBrokenDumps() {
        let broken = [
            "",
            "gomalloc-heapmap 2 pagesize 8192 arenapages 16\nend\n",  // another version
            Self.dump.replacingOccurrences(of: "end\n", with: ""),  // cut short
            Self.dump.replacingOccurrences(of: "uncommitted 4\n", with: ""),  // runs do not cover the arena
            Self.dump.replacingOccurrences(of: "large 2", with: "huge 2"),
            Self.dump.replacingOccurrences(of: "small 9 112 1\nsmall 44", with: "small 9 x 1\nsmall 44"),
            Self.dump + "free 1\n",  // after end
        ]
        for text in broken {
            XCTAssertThrowsError(try HeapDump(parsing: text), text)
        }
    }

    func testTextSummaryAndSVG() throws {
        let d = try HeapDump(parsing: Self.dump)
        let text = d.textSummary(title: "t")
        XCTAssertTrue(text.contains("size classes with most pages:\n     112 B        2 pages"), text)
        XCTAssertTrue(text.contains("[sssLLMM...rruuuu]".replacingOccurrences(of: "u", with: " ")), text)
        let svg = HeapMapSVG.render(d, title: "a <title> & more")
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssertTrue(parser.parse(), "\(String(describing: parser.parserError))\n\(svg)")
        XCTAssertTrue(svg.contains("<g id=\"legend\">"))
        XCTAssertTrue(svg.contains("small span, 112 B objects (class 9), 1 pages"))
        XCTAssertTrue(svg.contains("a &lt;title&gt; &amp; more"))
    }
}
