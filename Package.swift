// swift-tools-version:6.0
import PackageDescription

// KernelsAVX2 is compiled for Haswell-class x86-64 (AVX2, FMA, F16C, BMI); Kernels only calls it
// after checking the CPU at run time. Elsewhere it is built plainly and never called.
#if arch(x86_64)
let avx2Settings: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
#else
let avx2Settings: [SwiftSetting] = []
#endif

// Numeric code is only usable optimised: build and test with `-c release`.
let package = Package(
    name: "specdec",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "specdec", targets: ["specdec"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // System libraries (Debian: libopenblas-dev, libzstd-dev).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),

        // Shared base.
        // SHA-256 (swift-crypto) and CRC-32 (zlib) for shards, checkpoints, caches and PNG.
        .target(name: "Checksum", dependencies: [.product(name: "Crypto", package: "swift-crypto"), "CZlib"]),
        .target(name: "Kernels", dependencies: ["COpenBLAS", "CKernelsSupport", "KernelsAVX2"]), // quant formats, dequant, dot kernels, threads, BLAS
        .target(name: "CKernelsSupport"),                                // cpuid, atomics for the thread pool (C)
        // AVX2/FMA/F16C kernels: the whole module is compiled for Haswell-class CPUs; Kernels calls it
        // only after a run-time CPU check, so the program as a whole still runs on baseline x86-64.
        .target(name: "KernelsAVX2", dependencies: ["CKernelsSupport"], swiftSettings: avx2Settings),
        .target(name: "Diagnostics"),                                 // FieldError: the one "file: field: reason" error shape; progress rates
        .target(name: "GGUF", dependencies: ["Kernels", "Diagnostics"]),                // GGUF reader/writer over mmap
        .target(name: "Tokenizer", dependencies: ["GGUF"]),              // byte-level BPE, pre-tokenizers, chat templates
        .target(name: "SafeTensors", dependencies: ["Kernels", "Diagnostics"]),        // safetensors reader/writer (draft checkpoints)
        .target(name: "Sampling"),                                       // greedy / temperature / top-k / top-p / min-p
        .target(name: "Llama", dependencies: ["GGUF", "Kernels"]), // the LLaMA-family target model

        // ViSpec pieces (protocols now; filled by later issues).
        .target(name: "VisualAdapter", dependencies: ["Kernels"]),
        .target(name: "Draft", dependencies: ["Diagnostics", "Kernels", "VisualAdapter", "Llama", "Sampling", "SafeTensors", "GGUF"]),
        .target(name: "Verify", dependencies: ["Draft", "Kernels", "Llama", "Sampling"]),
        // The generation library: prompt input (LMInput) and the plain/speculative loop.
        .target(name: "Generation", dependencies: ["Diagnostics", "Checksum", "Kernels", "Llama", "Sampling", "Draft", "Verify", "Vision", "Tokenizer", "GGUF"]),
        // Speculative against plain decoding over a prompt set: `eval` and `bench --prompts`.
        .target(name: "Evaluation", dependencies: ["Diagnostics", "Draft", "Generation", "Shards", "DataSynth", "GGUF", "Kernels", "Llama", "Sampling", "Tokenizer", "Verify", "Vision"]),
        // `specdec serve`: the OpenAI-compatible HTTP server over the generation library.
        .target(name: "Serve", dependencies: [
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Logging", package: "swift-log"),
            "Generation", "Llama", "Tokenizer", "Vision", "Sampling", "Verify", "Draft", "GGUF",
        ]),
        // The training-data format alone: shard and manifest layout, reader, writer, dataset checks
        // and snapshots, zstd frames, checksums. Training reads it without the synthesizer.
        .target(name: "Shards", dependencies: ["Checksum", "CZstd", "GGUF", "Kernels"]),
        // Where training data comes from: prompt sources and generators, the synthesizer that runs
        // the target and writes shards, the evaluation set.
        .target(name: "DataSynth", dependencies: ["Diagnostics", "Generation", "Shards", "Checksum", "Llama", "GGUF", "Kernels", "Tokenizer", "Sampling", "Vision"]),
        .target(name: "Vision", dependencies: ["Checksum", "GGUF", "Kernels", "COpenBLAS", "CPNG", "CJPEG", "Llama", "Tokenizer"]), // images, mmproj towers, VLM prompts
        .target(name: "DraftTraining", dependencies: ["Diagnostics", "Draft", "Sampling", "SafeTensors", "Shards", "Llama", "Kernels", "COpenBLAS", "CZstd", "Vision"]), // draft + adapter training on the CPU

        .executableTarget(name: "specdec", dependencies: [
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            "GGUF", "Kernels", "Tokenizer", "Llama", "Sampling", "Draft", "Verify", "VisualAdapter", "Shards", "DataSynth", "Vision", "DraftTraining", "SafeTensors",
            "Generation", "Evaluation", "Serve", "Diagnostics",
        ]),

        .testTarget(name: "KernelsTests", dependencies: ["Kernels"], resources: [.copy("Fixtures")]),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "Kernels"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "GGUF", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "LlamaTests", dependencies: ["Llama", "Sampling", "GGUF", "TestSupport"]),
        .testTarget(name: "SamplingTests", dependencies: ["Sampling"]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport", "specdec", "Kernels"]),
        .testTarget(name: "DataSynthTests", dependencies: ["DataSynth", "Diagnostics", "Shards", "TestSupport", "specdec", "Llama", "Tokenizer", "GGUF", "Vision"]),
        .testTarget(name: "VisionTests", dependencies: ["Vision", "GGUF", "Kernels", "Llama", "Tokenizer", "Sampling", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "DraftTests", dependencies: ["Draft", "SafeTensors", "VisualAdapter", "Llama", "Kernels", "GGUF", "TestSupport"]),
        .testTarget(name: "DraftTrainingTests", dependencies: ["DraftTraining", "Draft", "SafeTensors", "DataSynth", "Shards", "Llama", "Kernels", "TestSupport"]),
        .testTarget(name: "VerifyTests", dependencies: ["Verify", "Draft", "Llama", "Sampling", "GGUF", "Tokenizer", "Vision", "TestSupport", "specdec", "Generation"]),
        .testTarget(name: "ServeTests", dependencies: [
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            "Serve", "TestSupport", "specdec", "Vision",
        ]),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
    ],
    // Numeric kernels pass raw pointers into worker threads; Swift 6's strict sendability
    // checking would need a wrapper at every such call, so the package uses Swift 5 mode.
    swiftLanguageModes: [.v5]
)
