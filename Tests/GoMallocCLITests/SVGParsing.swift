// SVGParsing.swift — the CLI tests' reading of the SVG files the CLI draws (chart.svg,
// rss-over-time.svg): parsed as XML into every element, its attributes, its own text and
// its parent's name; a file that is not well-formed XML fails the calling test.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

struct SVGElement {
    var name: String
    var attributes: [String: String]
    var text = ""
    var parent: String?
}

private final class SVGCollector: NSObject, XMLParserDelegate {
    var elements: [SVGElement] = []
    private var open: [Int] = []

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        elements.append(SVGElement(name: name, attributes: attributes, parent: open.last.map { elements[$0].name }))
        open.append(elements.count - 1)
    }
    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        open.removeLast()
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if let i = open.last { elements[i].text += string }
    }
}

/// The elements of `svg`, in document order; `what` names the file in the failure message.
func parseSVG(_ svg: String, what: String, file: StaticString = #filePath, line: UInt = #line) -> [SVGElement] {
    let parser = XMLParser(data: Data(svg.utf8))
    let collector = SVGCollector()
    parser.delegate = collector
    XCTAssertTrue(parser.parse(), "\(what) is not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "?")",
                  file: file, line: line)
    return collector.elements
}
