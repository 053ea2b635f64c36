// LinkedServer — a pretend request loop whose every allocation (Swift arrays, strings and
// dictionaries, through libswiftCore's malloc calls) is served by GoMalloc, because the
// executable links libgomalloc.so ahead of the C library. At the end it prints GoMalloc's
// own statistics, which count those allocations.
import CGoMalloc
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

let requests = 50_000
var cache: [String: [UInt8]] = [:]
var bytesServed = 0
for i in 0..<requests {
    let path = "/items/\(i % 1000)"
    let headers = ["Host": "example.invalid", "X-Request-Id": String(i), "Accept": "*/*"]
    let body = cache[path] ?? Array("item \(i % 1000) ".utf8) + [UInt8](repeating: UInt8(i & 0xff), count: i % 4000)
    cache[path] = body
    if cache.count > 500 { cache.removeAll() }
    let head = "HTTP/1.1 200 OK\r\nContent-Length: \(body.count)\r\n"
        + headers.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\r\n")
    bytesServed += head.utf8.count + body.count
}
print("served \(requests) requests, \(bytesServed) bytes")

// malloc here is whatever the dynamic linker bound: GoMalloc's, whose usable size is the
// size class (32 for a 24-byte request; glibc would say 24).
let p = malloc(24)
print("malloc_usable_size(malloc(24)) = \(malloc_usable_size(p))")
free(p)

print("allocator: GoMalloc \(String(cString: gomalloc_version()))")
fflush(stdout)
gomalloc_stats_print(1)
