import Foundation

/// One line of metrics.csv.
public struct MetricsRow: Sendable {
    public var step: Int
    public var lr: Float
    public var loss: Double
    public var l1: Double, rank: Double, reg: Double, ce: Double
    public var top1: Double
    public var top1SelfCorrect: Double
    public var gradNorm: Float
    public var tokens: Int
    public var valLoss: Double?
    public var valTop1: Double?
    public var valTau: Double?

    public static let header = "step,lr,loss,l1,rank,reg,ce,top1,top1_self_correct,grad_norm,tokens,val_loss,val_top1,val_tau"

    public var csv: String {
        func f(_ x: Double?) -> String { x.map { String(format: "%.6g", $0) } ?? "" }
        return "\(step),\(String(format: "%.6g", lr)),\(f(loss)),\(f(l1)),\(f(rank)),\(f(reg)),\(f(ce)),\(f(top1)),\(f(top1SelfCorrect)),\(String(format: "%.6g", gradNorm)),\(tokens),\(f(valLoss)),\(f(valTop1)),\(f(valTau))"
    }

    public init(step: Int, lr: Float, loss: Double, l1: Double, rank: Double, reg: Double, ce: Double, top1: Double,
                top1SelfCorrect: Double, gradNorm: Float, tokens: Int, valLoss: Double? = nil, valTop1: Double? = nil, valTau: Double? = nil) {
        self.step = step; self.lr = lr; self.loss = loss; self.l1 = l1; self.rank = rank; self.reg = reg; self.ce = ce
        self.top1 = top1; self.top1SelfCorrect = top1SelfCorrect; self.gradNorm = gradNorm; self.tokens = tokens
        self.valLoss = valLoss; self.valTop1 = valTop1; self.valTau = valTau
    }

    /// Parses a line written by `csv` (resume keeps the rows up to the resumed step).
    public init?(csv line: String) {
        let p = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard p.count == 14, let s = Int(p[0]) else { return nil }
        func d(_ i: Int) -> Double? { Double(p[i]) }
        self.init(step: s, lr: Float(p[1]) ?? 0, loss: d(2) ?? 0, l1: d(3) ?? 0, rank: d(4) ?? 0, reg: d(5) ?? 0, ce: d(6) ?? 0,
                  top1: d(7) ?? 0, top1SelfCorrect: d(8) ?? 0, gradNorm: Float(p[9]) ?? 0, tokens: Int(p[10]) ?? 0,
                  valLoss: d(11), valTop1: d(12), valTau: d(13))
    }
}

/// A hand-written SVG: training and validation loss (left), top-1 agreement (right).
public enum MetricsPlot {
    public static func svg(_ rows: [MetricsRow], title: String) -> String {
        let w = 460.0, h = 300.0, pad = 48.0
        func panel(x0: Double, label: String, series: [(String, String, [(Double, Double)])], yFixed: (Double, Double)?) -> String {
            let all = series.flatMap { $0.2 }
            guard let maxX = all.map({ $0.0 }).max(), !all.isEmpty else { return "" }
            var lo = yFixed?.0 ?? (all.map { $0.1 }.min() ?? 0), hi = yFixed?.1 ?? (all.map { $0.1 }.max() ?? 1)
            if hi <= lo { hi = lo + 1 }
            if yFixed == nil { let m = (hi - lo) * 0.05; lo -= m; hi += m }
            let minX = all.map { $0.0 }.min() ?? 0
            let spanX = max(maxX - minX, 1)
            func px(_ x: Double) -> Double { x0 + pad + (x - minX) / spanX * (w - 1.5 * pad) }
            func py(_ y: Double) -> Double { pad / 2 + (hi - y) / (hi - lo) * (h - 1.5 * pad) }
            var s = "<g font-family=\"sans-serif\" font-size=\"11\">\n"
            s += "<rect x=\"\(x0 + pad)\" y=\"\(pad / 2)\" width=\"\(w - 1.5 * pad)\" height=\"\(h - 1.5 * pad)\" fill=\"none\" stroke=\"#888\"/>\n"
            for k in 0...4 {
                let y = lo + (hi - lo) * Double(k) / 4
                s += "<text x=\"\(x0 + pad - 4)\" y=\"\(py(y) + 4)\" text-anchor=\"end\">\(String(format: "%.3g", y))</text>\n"
                let x = minX + spanX * Double(k) / 4
                s += "<text x=\"\(px(x))\" y=\"\(h - pad / 2 - 8)\" text-anchor=\"middle\">\(Int(x))</text>\n"
            }
            s += "<text x=\"\(x0 + w / 2)\" y=\"\(h - 6)\" text-anchor=\"middle\">step — \(label)</text>\n"
            for (k, (name, color, pts)) in series.enumerated() where !pts.isEmpty {
                let d = pts.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(d)\"/>\n"
                if pts.count < 40 { for p in pts { s += "<circle cx=\"\(String(format: "%.1f", px(p.0)))\" cy=\"\(String(format: "%.1f", py(p.1)))\" r=\"2.5\" fill=\"\(color)\"/>\n" } }
                s += "<text x=\"\(x0 + w - pad)\" y=\"\(pad / 2 + 14 + 14 * Double(k))\" text-anchor=\"end\" fill=\"\(color)\">\(name)</text>\n"
            }
            return s + "</g>\n"
        }
        // Training curves are noisy per step: a running mean over a window of ~2 % of the steps.
        func smooth(_ pts: [(Double, Double)]) -> [(Double, Double)] {
            let k = max(1, pts.count / 50)
            var out: [(Double, Double)] = []
            var acc = 0.0
            for (i, p) in pts.enumerated() {
                acc += p.1
                if i >= k { acc -= pts[i - k].1 }
                out.append((p.0, acc / Double(min(i + 1, k))))
            }
            return out
        }
        let loss = smooth(rows.map { (Double($0.step), $0.loss) })
        let vloss = rows.compactMap { r in r.valLoss.map { (Double(r.step), $0) } }
        let top1 = smooth(rows.map { (Double($0.step), $0.top1) })
        let vtop1 = rows.compactMap { r in r.valTop1.map { (Double(r.step), $0) } }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(2 * w))\" height=\"\(Int(h + 20))\" viewBox=\"0 0 \(Int(2 * w)) \(Int(h + 20))\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(w)\" y=\"14\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"13\">\(escape(title))</text>\n"
        s += "<g transform=\"translate(0,16)\">\n"
        s += panel(x0: 0, label: "loss per answer position", series: [("train", "#1f77b4", loss), ("validation", "#d62728", vloss)], yFixed: nil)
        s += panel(x0: w, label: "top-1 agreement with the target", series: [("train", "#1f77b4", top1), ("validation", "#d62728", vtop1)], yFixed: (0, 1))
        return s + "</g>\n</svg>\n"
    }

    static func escape(_ t: String) -> String {
        t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
