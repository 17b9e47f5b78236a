/// Compresses one image's embeddings (hundreds of rows of width d) into a few tokens for the
/// draft plus a global feature injected at every later text position (ViSpec). The draft holds its
/// adapter as this type; `CrossAttentionAdapter` is the one ViSpec trains.
public protocol VisualAdapter {
    /// Model width d of the embeddings it reads and writes.
    var width: Int { get }
    /// Number of learned queries K: K−1 compressed tokens plus one global feature.
    var queryCount: Int { get }
    /// `imageEmbeddings` holds `rows` × `width` floats; returns (K−1) × width compressed tokens and
    /// the width-long global feature.
    func compress(imageEmbeddings: UnsafeBufferPointer<Float>, rows: Int) throws -> (tokens: [Float], global: [Float])
}
