import Foundation

/// A small SVG line chart (axes, ticks, one polyline with dots per series, a legend): enough for
/// the README's evaluation plots without a plotting dependency.
public enum LinePlot {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public init(name: String, points: [(x: Double, y: Double)]) { self.name = name; self.points = points }
    }

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]

    /// `xTicks`: the x values to label (default: every x of the data); `yRange`: fixed limits
    /// (default: 0 to the data's maximum, with a little room). `logX` spaces x as log2.
    public static func svg(title: String, xLabel: String, yLabel: String, series: [Series], xTicks: [Double]? = nil,
                           yRange: (Double, Double)? = nil, logX: Bool = false, referenceY: Double? = nil) -> String {
        let w = 640.0, h = 400.0, left = 64.0, right = 170.0, top = 40.0, bottom = 52.0
        let all = series.flatMap(\.points)
        func tx(_ x: Double) -> Double { logX ? log2(max(x, 1e-9)) : x }
        let xs = all.map { tx($0.x) }
        let minX = xs.min() ?? 0, maxX = max(xs.max() ?? 1, (xs.min() ?? 0) + 1e-9)
        let (lo, hi) = yRange ?? (0, max(all.map(\.y).max() ?? 1, referenceY ?? 0) * 1.1 + 1e-9)
        func px(_ x: Double) -> Double { left + (tx(x) - minX) / (maxX - minX) * (w - left - right) }
        func py(_ y: Double) -> Double { top + (hi - y) / (hi - lo) * (h - top - bottom) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(w / 2 - right / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">\(escape(title))</text>\n"
        // Axes and ticks.
        s += line(left, py(lo), w - right, py(lo), "#000") + line(left, top, left, py(lo), "#000")
        for k in 0...5 {
            let y = lo + (hi - lo) * Double(k) / 5
            s += line(left, py(y), w - right, py(y), "#e0e0e0")
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.2g</text>\n", left - 6, py(y) + 4, y)
        }
        for x in xTicks ?? Array(Set(all.map(\.x))).sorted() {
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", px(x), py(lo) + 18, x)
        }
        if let r = referenceY {
            s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\n", left, py(r), w - right, py(r))
        }
        s += "<text x=\"\(left + (w - left - right) / 2)\" y=\"\(h - 12)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        s += "<text transform=\"translate(16 \(top + (h - top - bottom) / 2)) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        for (i, ser) in series.enumerated() where !ser.points.isEmpty {
            let c = colors[i % colors.count]
            let pts = ser.points.sorted { $0.x < $1.x }
            s += "<polyline fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\" points=\""
                + pts.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ") + "\"/>\n"
            for p in pts { s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%@\"/>\n", px(p.x), py(p.y), c) }
            let ly = top + 8 + Double(i) * 18
            s += line(w - right + 12, ly, w - right + 30, ly, c, width: 2)
            s += "<text x=\"\(w - right + 36)\" y=\"\(ly + 4)\">\(escape(ser.name))</text>\n"
        }
        return s + "</svg>\n"
    }

    private static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, _ c: String, width: Double = 1) -> String {
        String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%@\" stroke-width=\"%g\"/>\n", x1, y1, x2, y2, c, width)
    }

    static func escape(_ t: String) -> String {
        t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
