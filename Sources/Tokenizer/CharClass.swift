/// Character classes the pre-tokenizer regexes need, as bit flags per Unicode scalar.
///
/// - `letter`: general category L (Lu, Ll, Lt, Lm, Lo) — regex `\p{L}`.
/// - `number`: general category N (Nd, Nl, No) — regex `\p{N}`, and Rust's `char::is_numeric`
///   that HF's `Digits` pre-tokenizer uses.
/// - `whitespace`: the Unicode White_Space property — regex `\s` in Oniguruma (which HF
///   `tokenizers` uses) and in Rust `regex`.
///
/// The reference (HF `tokenizers` 0.2x: Oniguruma and Rust std) uses Unicode 16.0 tables while the
/// Swift standard library may be newer; characters assigned after 16.0 are therefore treated as
/// unassigned (category Cn, none of the classes) so that splits match the reference exactly.
enum CharClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let whitespace: UInt8 = 4
    /// U+000A or U+000D (`[\r\n]`).
    static let crlf: UInt8 = 8
    /// U+0020 (the literal space in ` ?`).
    static let space: UInt8 = 16

    /// Letter, number or whitespace: anything else is "other" (`[^\s\p{L}\p{N}]`).
    static let lnw: UInt8 = letter | number | whitespace

    @inline(__always)
    static func of(_ v: UInt32) -> UInt8 {
        if v < 0x10000 { return bmp[Int(v)] }
        return compute(v)
    }

    /// Classes of the Basic Multilingual Plane, computed once on first use.
    static let bmp: [UInt8] = (0..<0x10000).map { compute(UInt32($0)) }

    static func compute(_ v: UInt32) -> UInt8 {
        guard let s = Unicode.Scalar(v) else { return 0 }
        let p = s.properties
        if let age = p.age, age.major > 16 || (age.major == 16 && age.minor > 0) { return 0 }
        var f: UInt8 = 0
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            f = letter
        case .decimalNumber, .letterNumber, .otherNumber:
            f = number
        default:
            break
        }
        if p.isWhitespace { f |= whitespace }
        if v == 0x0A || v == 0x0D { f |= crlf }
        if v == 0x20 { f |= space }
        return f
    }
}
