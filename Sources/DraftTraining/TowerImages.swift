import Shards
import Foundation
import Vision

/// Image embeddings through the vision tower, once per image (keyed by SHA-256) and kept in
/// memory: a sample's picture is decoded, resized and encoded exactly as `specdec decode
/// --mmproj --image` does, so the rows match the span the target saw.
public final class TowerImageEmbedder: ImageEmbedder {
    let tower: any VisionEncoder
    private var cache: [String: (rows: Int, data: [Float])] = [:]

    public init(tower: any VisionEncoder) { self.tower = tower }

    public func embeddings(for image: ImageRef, datasetDir: String) throws -> (rows: Int, data: [Float]) {
        if let c = cache[image.sha256] { return c }
        let bytes: [UInt8]
        if let e = image.embedded { bytes = e } else {
            let path = image.path.hasPrefix("/") ? image.path : (datasetDir as NSString).appendingPathComponent(image.path)
            guard let d = FileManager.default.contents(atPath: path) ?? FileManager.default.contents(atPath: image.path) else {
                throw TrainingError(file: path, field: "image", reason: "cannot read the sample's image (neither embedded nor found at its path)")
            }
            bytes = Array(d)
        }
        let sha = Checksum.SHA256.hex(bytes)
        guard sha == image.sha256 else {
            throw TrainingError(file: image.path, field: "image.sha256", reason: "the image's bytes hash to \(sha), the sample says \(image.sha256)")
        }
        let emb = tower.encode(try ImageDecoder.decode(bytes, name: image.path))
        let r = (emb.rows, emb.data)
        cache[image.sha256] = r
        return r
    }
}
