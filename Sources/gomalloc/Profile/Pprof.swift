// Pprof.swift — a symbolized heap profile in pprof's format (github.com/google/pprof,
// proto/profile.proto: perftools.profiles.Profile), gzip-compressed as pprof and
// `go tool pprof` expect, with Go's heap-profile layout: sample types alloc_objects/count,
// alloc_space/bytes, inuse_objects/count, inuse_space/bytes (the default), period type
// space/bytes with the sampling rate as period, and a numeric `bytes` label with each
// sample's object size.
//
// The message is written by hand (protobuf's wire format: varints and length-delimited
// fields) rather than through generated code: the CLI needs to write seven small messages,
// which is less code than a protoc-generated file and keeps the CLI free of a protobuf
// dependency. The integration test decodes the file with protoc (libprotobuf) against
// profile.proto. The gzip stream uses stored (uncompressed) deflate blocks with the CRC-32
// that gzip requires: valid for every reader, and larger than a compressed one.
import Foundation

/// Protobuf wire-format writer (proto3: packed repeated scalars).
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wire: Int) { varint(UInt64(field << 3 | wire)) }

    /// A varint field (omitted when 0, as proto3 does).
    mutating func int(_ field: Int, _ v: Int64) {
        if v == 0 { return }
        key(field, 0)
        varint(UInt64(bitPattern: v))
    }

    mutating func uint(_ field: Int, _ v: UInt64) {
        if v == 0 { return }
        key(field, 0)
        varint(v)
    }

    mutating func bool(_ field: Int, _ v: Bool) { if v { key(field, 0); varint(1) } }

    mutating func bytesField(_ field: Int, _ b: [UInt8]) {
        key(field, 2)
        varint(UInt64(b.count))
        bytes += b
    }

    mutating func string(_ field: Int, _ s: String) { bytesField(field, Array(s.utf8)) }

    mutating func message(_ field: Int, _ body: (inout ProtoWriter) -> Void) {
        var w = ProtoWriter()
        body(&w)
        bytesField(field, w.bytes)
    }

    mutating func packed(_ field: Int, _ values: [UInt64]) {
        if values.isEmpty { return }
        var w = ProtoWriter()
        for v in values { w.varint(v) }
        bytesField(field, w.bytes)
    }
}

enum Pprof {
    /// The four sample types, in order (Go's heap profile).
    static let sampleTypes = [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")]

    /// The uncompressed Profile message.
    static func encode(_ p: SymbolizedProfile, timeNanos: Int64 = 0) -> [UInt8] {
        var strings: [String] = [""]
        var stringIndex: [String: Int] = ["": 0]
        func str(_ s: String) -> Int64 {
            if let i = stringIndex[s] { return Int64(i) }
            strings.append(s)
            stringIndex[s] = strings.count - 1
            return Int64(strings.count - 1)
        }
        var w = ProtoWriter()
        for (t, u) in sampleTypes {
            let ti = str(t), ui = str(u)
            w.message(1) { $0.int(1, ti); $0.int(2, ui) }
        }
        // Mappings: the file-backed executable ones (id = index + 1).
        var mappingIDs: [Int] = []  // parallel to p.mappings: 0 = not emitted
        var mappingMessages: [[UInt8]] = []
        for m in p.mappings {
            if m.perms.contains("x") && m.path.hasPrefix("/") {
                let id = mappingMessages.count + 1
                mappingIDs.append(id)
                var mw = ProtoWriter()
                mw.uint(1, UInt64(id))
                mw.uint(2, UInt64(m.start))
                mw.uint(3, UInt64(m.end))
                mw.uint(4, UInt64(m.offset))
                mw.int(5, str(m.path))
                mw.bool(7, true)  // has_functions
                mappingMessages.append(mw.bytes)
            } else {
                mappingIDs.append(0)
            }
        }
        // Locations (one per distinct pc) and functions (one per name and binary).
        var locationIDs: [UInt: UInt64] = [:]
        var locations: [[UInt8]] = []
        var functionIDs: [String: UInt64] = [:]
        var functions: [[UInt8]] = []
        func location(_ f: SymbolizedProfile.Frame) -> UInt64 {
            if let id = locationIDs[f.pc] { return id }
            let fkey = f.function + "\u{0}" + f.binary
            let fid: UInt64
            if let id = functionIDs[fkey] { fid = id } else {
                fid = UInt64(functions.count + 1)
                functionIDs[fkey] = fid
                var fw = ProtoWriter()
                fw.uint(1, fid)
                fw.int(2, str(f.function))
                fw.int(3, str(f.function))
                if let file = f.file { fw.int(4, str(file)) }  // source file: only with line tables
                functions.append(fw.bytes)
            }
            let id = UInt64(locations.count + 1)
            locationIDs[f.pc] = id
            var lw = ProtoWriter()
            lw.uint(1, id)
            if let mi = p.mappings.firstIndex(where: { f.pc >= $0.start && f.pc < $0.end }), mappingIDs[mi] != 0 {
                lw.uint(2, UInt64(mappingIDs[mi]))
            }
            lw.uint(3, UInt64(f.pc))
            lw.message(4) { $0.uint(1, fid); $0.int(2, Int64(f.line)) }
            locations.append(lw.bytes)
            return id
        }
        let bytesKey = str("bytes")
        for e in p.entries {
            let ids = e.frames.map(location)
            let values = [e.allocObjects, e.allocBytes, e.inuseObjects, e.inuseBytes].map { UInt64(max(0, $0.rounded())) }
            w.message(2) { s in
                s.packed(1, ids)
                s.packed(2, values)
                s.message(3) { $0.int(1, bytesKey); $0.int(3, Int64(e.size)) }
            }
        }
        for m in mappingMessages { w.bytesField(3, m) }
        for l in locations { w.bytesField(4, l) }
        for f in functions { w.bytesField(5, f) }
        let space = str("space"), bytesUnit = str("bytes"), defaultType = str("inuse_space")
        for s in strings { w.string(6, s) }
        w.int(9, timeNanos)
        w.message(11) { $0.int(1, space); $0.int(2, bytesUnit) }
        w.int(12, Int64(p.rate))
        w.int(14, defaultType)
        return w.bytes
    }

    /// The gzip file of `p` (heap.pb.gz).
    static func gzipped(_ p: SymbolizedProfile, timeNanos: Int64 = 0) -> Data {
        Data(Gzip.stored(encode(p, timeNanos: timeNanos)))
    }
}

/// gzip (RFC 1952) around deflate's stored blocks (RFC 1951 §3.2.4).
enum Gzip {
    private static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in data { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func stored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3]  // deflate, no flags, no mtime, Unix
        var i = 0
        repeat {
            let n = min(65535, data.count - i)
            out.append(i + n == data.count ? 1 : 0)  // BFINAL, BTYPE 00
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[i..<(i + n)]
            i += n
        } while i < data.count
        func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)] }
        out += le32(crc32(data))
        out += le32(UInt32(truncatingIfNeeded: data.count))
        return out
    }
}
