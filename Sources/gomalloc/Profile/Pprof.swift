// Pprof.swift — a symbolized heap profile in pprof's format (github.com/google/pprof,
// proto/profile.proto: perftools.profiles.Profile), gzip-compressed as pprof and
// `go tool pprof` expect, with Go's heap-profile layout: sample types alloc_objects/count,
// alloc_space/bytes, inuse_objects/count, inuse_space/bytes (the default), period type
// space/bytes with the sampling rate as period, and a numeric `bytes` label with each
// sample's object size.
//
// The messages are swift-protobuf's, generated from Tests/Protos/profile.proto (pprof's
// schema) into profile.pb.swift:
//   protoc --plugin=protoc-gen-swift=PATH --swift_out=Sources/gomalloc/Profile \
//          --swift_opt=Visibility=Internal --proto_path=Tests/Protos profile.proto
// (protoc-gen-swift is built from the swift-protobuf checkout: `swift build -c release
// --product protoc-gen-swift`). The integration test decodes the file with protoc
// (libprotobuf) too. gzip is zlib's (deflate, window bits 31: the gzip wrapper).
import CZlib
import Foundation
import SwiftProtobuf

enum Pprof {
    /// The four sample types, in order (Go's heap profile).
    static let sampleTypes = [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")]

    /// The uncompressed Profile message.
    static func encode(_ p: SymbolizedProfile, timeNanos: Int64 = 0) -> [UInt8] {
        var profile = Perftools_Profiles_Profile()
        var stringIndex: [String: Int64] = ["": 0]
        profile.stringTable = [""]
        func str(_ s: String) -> Int64 {
            if let i = stringIndex[s] { return i }
            profile.stringTable.append(s)
            let i = Int64(profile.stringTable.count - 1)
            stringIndex[s] = i
            return i
        }
        func valueType(_ type: String, _ unit: String) -> Perftools_Profiles_ValueType {
            var v = Perftools_Profiles_ValueType()
            v.type = str(type)
            v.unit = str(unit)
            return v
        }
        profile.sampleType = sampleTypes.map { valueType($0.0, $0.1) }
        // Mappings: the file-backed executable ones (id = index + 1).
        var mappingIDs: [UInt64] = []  // parallel to p.mappings: 0 = not emitted
        for m in p.mappings {
            guard m.perms.contains("x") && m.path.hasPrefix("/") else { mappingIDs.append(0); continue }
            var mapping = Perftools_Profiles_Mapping()
            mapping.id = UInt64(profile.mapping.count + 1)
            mapping.memoryStart = UInt64(m.start)
            mapping.memoryLimit = UInt64(m.end)
            mapping.fileOffset = UInt64(m.offset)
            mapping.filename = str(m.path)
            mapping.hasFunctions_p = true
            profile.mapping.append(mapping)
            mappingIDs.append(mapping.id)
        }
        // Locations (one per distinct pc) and functions (one per name and binary).
        var locationIDs: [UInt: UInt64] = [:]
        var functionIDs: [String: UInt64] = [:]
        func location(_ f: SymbolizedProfile.Frame) -> UInt64 {
            if let id = locationIDs[f.pc] { return id }
            let key = f.function + "\u{0}" + f.binary
            let fid: UInt64
            if let id = functionIDs[key] { fid = id } else {
                var function = Perftools_Profiles_Function()
                function.id = UInt64(profile.function.count + 1)
                function.name = str(f.function)
                function.systemName = str(f.function)
                if let file = f.file { function.filename = str(file) }  // source file: only with line tables
                profile.function.append(function)
                fid = function.id
                functionIDs[key] = fid
            }
            var loc = Perftools_Profiles_Location()
            loc.id = UInt64(profile.location.count + 1)
            if let mi = p.mappings.firstIndex(where: { f.pc >= $0.start && f.pc < $0.end }) { loc.mappingID = mappingIDs[mi] }
            loc.address = UInt64(f.pc)
            var line = Perftools_Profiles_Line()
            line.functionID = fid
            line.line = Int64(f.line)
            loc.line = [line]
            profile.location.append(loc)
            locationIDs[f.pc] = loc.id
            return loc.id
        }
        let bytesKey = str("bytes")
        for e in p.entries {
            var sample = Perftools_Profiles_Sample()
            sample.locationID = e.frames.map(location)
            sample.value = [e.allocObjects, e.allocBytes, e.inuseObjects, e.inuseBytes].map { Int64(max(0, $0.rounded())) }
            var label = Perftools_Profiles_Label()
            label.key = bytesKey
            label.num = Int64(e.size)
            sample.label = [label]
            profile.sample.append(sample)
        }
        profile.timeNanos = timeNanos
        profile.periodType = valueType("space", "bytes")
        profile.period = Int64(p.rate)
        profile.defaultSampleType = str("inuse_space")
        // Serializing a message built here cannot fail (every field is set from our values).
        return (try? Array(profile.serializedBytes() as [UInt8])) ?? []
    }

    /// The gzip file of `p` (heap.pb.gz).
    static func gzipped(_ p: SymbolizedProfile, timeNanos: Int64 = 0) -> Data {
        Data(Gzip.compress(encode(p, timeNanos: timeNanos)))
    }
}

/// gzip through zlib.
enum Gzip {
    /// `data` as a gzip stream (RFC 1952; zlib's deflate at its default level).
    static func compress(_ data: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
        guard deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                            ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return [] }
        defer { deflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(data.count))) + 32)
        var input = data
        let written: Int = input.withUnsafeMutableBufferPointer { inp in
            out.withUnsafeMutableBufferPointer { outp in
                stream.next_in = inp.baseAddress
                stream.avail_in = uInt(inp.count)
                stream.next_out = outp.baseAddress
                stream.avail_out = uInt(outp.count)
                return deflate(&stream, Z_FINISH) == Z_STREAM_END ? outp.count - Int(stream.avail_out) : -1
            }
        }
        return written < 0 ? [] : Array(out.prefix(written))
    }
}
