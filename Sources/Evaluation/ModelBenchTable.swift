import Foundation

extension ModelBench.Report {
    /// `bench`'s table: throughput, verify-cost curves, bandwidth and floor, memory and load.
    /// `ppExact`: pp was measured on the batch-invariant path (not in the report itself).
    public func table(ppExact: Bool) -> String {
        func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
        var s = "specdec bench: \(model), \(threads) thread\(threads == 1 ? "" : "s"), \(cpu) (\(cores) cores), \(date)\n"
        s += "\n" + "test".padding(8) + "  " + "tok/s median".leftPad(12) + "  " + "min".leftPad(9) + "  " + "max".leftPad(9) + "\n"
        for (name, t) in throughput {
            s += name.padding(8) + "  " + fmt(t.median_tokens_per_s, 1).leftPad(12) + "  " + fmt(t.min_tokens_per_s, 1).leftPad(9)
                + "  " + fmt(t.max_tokens_per_s, 1).leftPad(9)
            if let p = t.percent_of_floor { s += "   \(fmt(p, 1))% of floor" }
            s += "\n"
        }
        s += "(median of \(reps) after 1 warm-up; pp on the \(ppExact ? "batch-invariant" : "OpenBLAS") path)\n"
        for v in verify_costs {
            s += "\nverify cost at context \(v.context) (batch-invariant, logits for the last row):\n"
            s += "N".leftPad(4) + "  " + "ms".leftPad(9) + "  " + "×N=\(v.points.first?.n ?? 1)".leftPad(7) + "  " + "ms/token".leftPad(9) + "\n"
            for p in v.points {
                s += String(p.n).leftPad(4) + "  " + fmt(p.median_ms, 2).leftPad(9) + "  " + fmt(p.ratio, 2).leftPad(7)
                    + "  " + fmt(p.ms_per_token, 3).leftPad(9) + "\n"
            }
        }
        if !head_cost.isEmpty {
            s += "\nLM head alone (the verifier's head runs on the rows its walk visits):\n"
            s += "rows".leftPad(4) + "  " + "ms".leftPad(9) + "  " + "×1 row".leftPad(7) + "\n"
            for p in head_cost {
                s += String(p.rows).leftPad(4) + "  " + fmt(p.median_ms, 3).leftPad(9) + "  " + fmt(p.ratio, 2).leftPad(7) + "\n"
            }
        }
        s += "\n"
        if let bw = bandwidth_gbs {
            s += "memory read bandwidth: \(fmt(bw, 2)) GB/s best, \(fmt(bandwidth_median_gbs ?? 0, 2)) median (\(bandwidth_passes) passes over \(bandwidth_buffer_mib) MiB, \(threads) threads)\n"
        }
        s += "weights per token: \(fmt(Double(weight_bytes_per_token) / 1e6, 1)) MB"
        if let f = floor_tokens_per_s { s += " -> bandwidth floor \(fmt(f, 1)) tok/s" }
        s += "\npeak RSS: \(fmt(peak_rss_mb, 1)) MiB"
        if let a = load_average_start, let b = load_average_end {
            s += "\nload average (1 min): \(fmt(a, 2)) at start, \(fmt(b, 2)) at end"
        }
        if let i = image_prefill { s += "\n" + i.tableLine }
        return s
    }
}
