// HeapSnapshot.swift — what is where in the heap, for people studying Go's design.
import GoMallocCoreHosted

/// A consistent picture of the heap, taken with the world stopped.
public struct HeapSnapshot: Sendable {
    /// Spans of one span class (`sizeClass << 1 | noscan`) by where they sit.
    public struct SpanClassRow: Sendable {
        public var spanClass: Int
        public var sizeClass: Int { spanClass >> 1 }
        public var objectSize: Int
        public var spans: Int
        /// Spans an mcache allocates from.
        public var allocating: Int
        /// Spans an mcache ran out of and still owns (DESIGN.md, "retired spans").
        public var retired: Int
        /// Spans on the mcentral's partial and full lists.
        public var partial: Int
        public var full: Int
        public var liveObjects: Int
        public var totalObjects: Int
        public var pages: Int
    }

    /// Base addresses of the 64 MiB heap arenas reserved so far.
    public var arenas: [UInt]
    public var committedPages: Int
    public var inUsePages: Int
    public var freePages: Int
    public var releasedPages: Int
    public var largeSpans: Int
    public var largePages: Int
    /// Stack spans (from `allocateStack` / `gomalloc_stack_alloc`) and their pages (part of
    /// `inUsePages`).
    public var stackSpans: Int
    public var stackPages: Int
    public var spanClasses: [SpanClassRow]
    /// One character per 8 KiB page from the start of the lowest arena: `s` small-object span,
    /// `L` large object, `M` manual (stack) span, `.` free, `r` free and released to the OS,
    /// blank: not committed yet.
    public var pageMap: String
}

extension GoAllocator {
    /// Take a snapshot of the heap (stops the world briefly: for inspection, not hot paths).
    public static func heapSnapshot(pageMapLength: Int = 1024) -> HeapSnapshot {
        let v = takeHeapView(mapPages: pageMapLength)
        return HeapSnapshot(
            arenas: v.arenaBases, committedPages: v.committedPages, inUsePages: v.inUsePages,
            freePages: v.freePages, releasedPages: v.releasedPages, largeSpans: v.largeSpans,
            largePages: v.largePages, stackSpans: v.stackSpans, stackPages: v.stackPages,
            spanClasses: v.classes.map {
                HeapSnapshot.SpanClassRow(spanClass: $0.spanClass, objectSize: $0.size, spans: $0.spans,
                                          allocating: $0.allocating, retired: $0.retired, partial: $0.partial,
                                          full: $0.full, liveObjects: $0.liveObjects,
                                          totalObjects: $0.totalObjects, pages: $0.pages)
            },
            pageMap: String(decoding: v.pageMap, as: UTF8.self))
    }
}
