// OptionsHelp.swift: the options section of `gomalloc --help`, rendered from the table of
// GOMALLOC_* environment variables (Sources/GoMallocCore/Options.swift).
import GoMallocCoreHosted

enum OptionsHelp {
    /// One entry per option: its name, range and default, then what it does (the table's
    /// Markdown code spans as plain text).
    static var text: String {
        var s = "Environment variables, read once when the heap starts (in any program running under GoMalloc):"
        for option in Option.allCases {
            let r = option.row
            s += "\n\n\(r.name) (\(r.rangeDoc); default: \(r.defaultDoc))\n"
            s += "\(r.doc)".replacingOccurrences(of: "`", with: "")
        }
        return s
    }
}
