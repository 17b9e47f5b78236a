/// Column padding for the plain-text tables the benches print.
extension String {
    /// Left-aligned in `width` columns.
    public func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }

    /// Right-aligned in `width` columns.
    public func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
