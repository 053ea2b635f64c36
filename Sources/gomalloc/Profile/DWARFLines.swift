// DWARFLines.swift — the line table of an ELF file's .debug_line (DWARF 2 to 5, 32- and 64-bit
// units): address -> source file and line, for the frames of a heap profile. Compressed debug
// sections (SHF_COMPRESSED) and split DWARF are not read (no lines then).
import Foundation

struct DWARFLines {
    /// Rows sorted by address; a row with `line` 0 ends a sequence (no line from there on).
    private(set) var rows: [(address: UInt, file: Int32, line: Int32)] = []
    private(set) var files: [String] = []

    var isEmpty: Bool { rows.isEmpty }

    /// `sections`: name -> bytes of that section (.debug_line, .debug_line_str, .debug_str).
    init(debugLine: ArraySlice<UInt8>, lineStr: ArraySlice<UInt8>, str: ArraySlice<UInt8>) {
        var fileIndex: [String: Int32] = [:]
        func intern(_ s: String) -> Int32 {
            if let i = fileIndex[s] { return i }
            files.append(s)
            fileIndex[s] = Int32(files.count - 1)
            return Int32(files.count - 1)
        }
        var r = Reader(bytes: debugLine)
        while r.remaining > 0 {
            guard let unit = try? r.unit() else { break }
            var u = unit.reader
            guard let header = try? u.lineHeader(dwarf64: unit.dwarf64, lineStr: lineStr, str: str) else { continue }
            let fileIDs = header.files.map(intern)
            // The state machine (DWARF 5, 6.2.2).
            var address: UInt = 0, file = header.version >= 5 ? 0 : 1, line = 1
            func emit() {
                let i = header.version >= 5 ? file : file - 1
                let fid: Int32 = i >= 0 && i < fileIDs.count ? fileIDs[i] : -1
                rows.append((address, fid, Int32(truncatingIfNeeded: line)))
            }
            while u.remaining > 0 {
                guard let op = try? u.u8() else { break }
                if op >= header.opcodeBase {
                    let adj = Int(op - header.opcodeBase)
                    address &+= UInt(adj / Int(header.lineRange)) * UInt(header.minInst)
                    line += Int(header.lineBase) + adj % Int(header.lineRange)
                    emit()
                    continue
                }
                do {
                    switch op {
                    case 0:
                        let len = Int(try u.uleb())
                        guard len > 0 else { continue }
                        let start = u.offset
                        let sub = try u.u8()
                        switch sub {
                        case 1:  // end_sequence
                            rows.append((address, -1, 0))
                            address = 0; file = header.version >= 5 ? 0 : 1; line = 1
                        case 2: address = UInt(try u.fixed(len - 1))
                        default: break
                        }
                        u.offset = start + len
                    case 1: emit()
                    case 2: address &+= UInt(try u.uleb()) * UInt(header.minInst)
                    case 3: line += Int(try u.sleb())
                    case 4: file = Int(try u.uleb())
                    case 5: _ = try u.uleb()
                    case 6, 7, 10, 11: break
                    case 8: address &+= UInt((255 - Int(header.opcodeBase)) / Int(header.lineRange)) * UInt(header.minInst)
                    case 9: address &+= UInt(try u.fixed(2))
                    case 12: _ = try u.uleb()
                    default:
                        // An opcode this version does not define: skip its uleb operands.
                        let n = Int(op) - 1 < header.standardLengths.count ? header.standardLengths[Int(op) - 1] : 0
                        for _ in 0..<n { _ = try u.uleb() }
                    }
                } catch { break }
            }
        }
        rows.sort { $0.address != $1.address ? $0.address < $1.address : $0.line == 0 && $1.line != 0 }
    }

    /// The file and line of the instruction at `address`, if a sequence covers it.
    func lookup(_ address: UInt) -> (file: String, line: Int)? {
        var lo = 0, hi = rows.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if rows[mid].address <= address { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        let row = rows[lo - 1]
        guard row.line > 0, row.file >= 0, lo < rows.count else { return nil }
        return (files[Int(row.file)], Int(row.line))
    }
}

private struct LineHeader {
    var version: Int
    var minInst: UInt8
    var lineBase: Int8
    var lineRange: UInt8
    var opcodeBase: UInt8
    var standardLengths: [Int]
    var files: [String]
}

private struct Reader {
    struct End: Error {}
    let bytes: ArraySlice<UInt8>
    var offset: Int

    init(bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        offset = bytes.startIndex
    }

    var remaining: Int { bytes.endIndex - offset }

    mutating func u8() throws -> UInt8 {
        guard offset < bytes.endIndex else { throw End() }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func fixed(_ n: Int) throws -> UInt64 {
        guard n >= 0, n <= 8, offset + n <= bytes.endIndex else { throw End() }
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        offset += n
        return v
    }

    mutating func uleb() throws -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while true {
            let b = try u8()
            if shift < 64 { v |= UInt64(b & 0x7F) << shift }
            shift += 7
            if b & 0x80 == 0 { return v }
        }
    }

    mutating func sleb() throws -> Int64 {
        var v: Int64 = 0, shift: Int64 = 0, b: UInt8 = 0
        repeat {
            b = try u8()
            if shift < 64 { v |= Int64(b & 0x7F) << shift }
            shift += 7
        } while b & 0x80 != 0
        if shift < 64 && b & 0x40 != 0 { v |= -(Int64(1) << shift) }
        return v
    }

    mutating func cString() throws -> String {
        let start = offset
        while true { if try u8() == 0 { break } }
        return String(decoding: bytes[start..<(offset - 1)], as: UTF8.self)
    }

    /// The next unit: its body's reader and whether it is 64-bit DWARF.
    mutating func unit() throws -> (reader: Reader, dwarf64: Bool) {
        var len = try fixed(4)
        var dwarf64 = false
        if len == 0xFFFF_FFFF { len = try fixed(8); dwarf64 = true }
        guard len <= UInt64(remaining) else { throw End() }
        let body = Reader(bytes: bytes[offset..<(offset + Int(len))])
        offset += Int(len)
        return (body, dwarf64)
    }

    static func string(at off: UInt64, in s: ArraySlice<UInt8>) -> String {
        var i = s.startIndex + Int(off)
        guard i < s.endIndex else { return "" }
        let start = i
        while i < s.endIndex && s[i] != 0 { i += 1 }
        return String(decoding: s[start..<i], as: UTF8.self)
    }

    /// A DWARF 5 entry-format value: strings for paths, numbers for indices, else skipped.
    mutating func form(_ f: UInt64, dwarf64: Bool, lineStr: ArraySlice<UInt8>, str: ArraySlice<UInt8>) throws -> (String?, UInt64?) {
        switch f {
        case 0x08: return (try cString(), nil)                                                   // string
        case 0x1F: return (Reader.string(at: try fixed(dwarf64 ? 8 : 4), in: lineStr), nil)      // line_strp
        case 0x0E: return (Reader.string(at: try fixed(dwarf64 ? 8 : 4), in: str), nil)          // strp
        case 0x0F: return (nil, try uleb())                                                      // udata
        case 0x0B: return (nil, try fixed(1))
        case 0x05: return (nil, try fixed(2))
        case 0x06: return (nil, try fixed(4))
        case 0x07: return (nil, try fixed(8))
        case 0x1E: offset += 16; return (nil, nil)                                              // data16 (MD5)
        case 0x09: offset += Int(try uleb()); return (nil, nil)                                 // block
        default: throw End()
        }
    }

    mutating func lineHeader(dwarf64: Bool, lineStr: ArraySlice<UInt8>, str: ArraySlice<UInt8>) throws -> LineHeader {
        let version = Int(try fixed(2))
        guard (2...5).contains(version) else { throw End() }
        if version >= 5 { _ = try fixed(2) }  // address_size, segment_selector_size
        let headerLength = Int(try fixed(dwarf64 ? 8 : 4))
        let programStart = offset + headerLength
        let minInst = try u8()
        if version >= 4 { _ = try u8() }  // maximum_operations_per_instruction
        _ = try u8()  // default_is_stmt
        let lineBase = Int8(bitPattern: try u8())
        let lineRange = try u8()
        let opcodeBase = try u8()
        guard lineRange > 0, opcodeBase > 0 else { throw End() }
        var lengths: [Int] = []
        for _ in 1..<Int(opcodeBase) { lengths.append(Int(try u8())) }
        var files: [String] = []
        if version >= 5 {
            func entries() throws -> [(path: String, dir: Int)] {
                let nformats = Int(try u8())
                var formats: [(UInt64, UInt64)] = []
                for _ in 0..<nformats { formats.append((try uleb(), try uleb())) }
                let count = Int(try uleb())
                var out: [(String, Int)] = []
                for _ in 0..<count {
                    var path = "", dir = 0
                    for (type, form) in formats {
                        let (s, n) = try self.form(form, dwarf64: dwarf64, lineStr: lineStr, str: str)
                        if type == 1, let s { path = s }         // DW_LNCT_path
                        if type == 2, let n { dir = Int(n) }     // DW_LNCT_directory_index
                    }
                    out.append((path, dir))
                }
                return out
            }
            let dirs = try entries().map(\.path)
            for f in try entries() {
                files.append(f.path.hasPrefix("/") || f.dir >= dirs.count ? f.path : dirs[f.dir] + "/" + f.path)
            }
        } else {
            var dirs: [String] = [""]
            while true {
                let d = try cString()
                if d.isEmpty { break }
                dirs.append(d)
            }
            while true {
                let name = try cString()
                if name.isEmpty { break }
                let dir = Int(try uleb())
                _ = try uleb(); _ = try uleb()
                files.append(name.hasPrefix("/") || dir == 0 || dir >= dirs.count ? name : dirs[dir] + "/" + name)
            }
        }
        offset = programStart
        return LineHeader(version: version, minInst: minInst, lineBase: lineBase, lineRange: lineRange,
                          opcodeBase: opcodeBase, standardLengths: lengths, files: files)
    }
}
