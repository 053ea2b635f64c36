// FlameGraph.swift — a flame graph SVG drawn from folded stacks: the root (all) at the bottom,
// each frame a rectangle as wide as the bytes allocated under it, callers below callees;
// children in name order, as Brendan Gregg's flamegraph.pl draws them. Each rectangle has a
// <title> tooltip (function, bytes, share); names are shown where they fit.
import Foundation

enum FlameGraph {
    final class Node {
        let name: String
        var value: Double = 0
        var children: [String: Node] = [:]
        init(_ name: String) { self.name = name }
    }

    /// The tree of folded stacks (`a;b;c 123` lines).
    static func tree(folded: String) -> Node {
        let root = Node("all")
        for line in folded.split(separator: "\n") {
            guard let sp = line.lastIndex(of: " "), let v = Double(line[line.index(after: sp)...]), v > 0 else { continue }
            root.value += v
            var n = root
            for f in line[..<sp].split(separator: ";") {
                let name = String(f)
                let c = n.children[name] ?? { let c = Node(name); n.children[name] = c; return c }()
                c.value += v
                n = c
            }
        }
        return root
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for ch in s.unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                // XML 1.0 forbids most control characters.
                if ch.value < 0x20 && ch != "\t" { out += "?" } else { out.unicodeScalars.append(ch) }
            }
        }
        return out
    }

    /// A warm color from the name (stable from run to run).
    static func color(_ name: String) -> String {
        var h: UInt32 = 2_166_136_261
        for b in name.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        let r = 205 + Int(h % 50), g = 80 + Int((h >> 8) % 130), b = 30 + Int((h >> 16) % 40)
        return "rgb(\(r),\(g),\(b))"
    }

    static func formatBytes(_ v: Double) -> String {
        if v >= 1_073_741_824 { return String(format: "%.2f GiB", v / 1_073_741_824) }
        if v >= 1_048_576 { return String(format: "%.2f MiB", v / 1_048_576) }
        if v >= 1024 { return String(format: "%.1f KiB", v / 1024) }
        return String(format: "%.0f B", v)
    }

    static func render(folded: String, title: String, subtitle: String = "", width: Int = 1200) -> String {
        let root = tree(folded: folded)
        func depth(_ n: Node) -> Int { 1 + (n.children.values.map(depth).max() ?? 0) }
        let frameHeight = 16, top = 50, bottomPad = 30, side = 10
        let levels = depth(root)
        let height = top + levels * frameHeight + bottomPad
        let usable = Double(width - 2 * side)
        var body = ""
        // Frames narrower than this are left out (as flamegraph.pl's --minwidth).
        let minWidth = 0.1
        func draw(_ n: Node, x: Double, level: Int) {
            let w = root.value > 0 ? n.value / root.value * usable : 0
            if w < minWidth { return }
            let y = height - bottomPad - (level + 1) * frameHeight
            let share = root.value > 0 ? n.value / root.value * 100 : 0
            let tip = "\(n.name) (\(formatBytes(n.value)), \(String(format: "%.2f", share))%)"
            body += "<g><title>\(escape(tip))</title>"
            body += "<rect x=\"\(String(format: "%.2f", x))\" y=\"\(y)\" width=\"\(String(format: "%.2f", w))\" height=\"\(frameHeight - 1)\" fill=\"\(level == 0 ? "rgb(220,120,60)" : color(n.name))\" rx=\"2\"/>"
            // About 7 px per character at 12 px.
            let fits = Int((w - 6) / 7)
            if fits >= 3 {
                let label = n.name.count <= fits ? n.name : String(n.name.prefix(fits - 2)) + ".."
                body += "<text x=\"\(String(format: "%.2f", x + 3))\" y=\"\(y + frameHeight - 4)\">\(escape(label))</text>"
            }
            body += "</g>\n"
            var cx = x
            for c in n.children.values.sorted(by: { $0.name < $1.name }) {
                draw(c, x: cx, level: level + 1)
                cx += root.value > 0 ? c.value / root.value * usable : 0
            }
        }
        draw(root, x: Double(side), level: 0)
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" font-family="Verdana, sans-serif" font-size="12">
            <rect x="0" y="0" width="\(width)" height="\(height)" fill="rgb(250,250,240)"/>
            <text x="\(width / 2)" y="22" font-size="16" text-anchor="middle">\(escape(title))</text>
            <text x="\(width / 2)" y="40" font-size="12" text-anchor="middle" fill="#555">\(escape(subtitle))</text>
            <g id="frames">
            \(body)</g>
            </svg>

            """
    }
}
