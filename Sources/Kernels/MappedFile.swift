#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A regular file mapped read-only and private: how GGUF models and safetensors drafts are read,
/// so that packed weights stay in the page cache and are never copied. The caller owns the
/// mapping (`munmap(base, size)`).
public enum MappedFile {
    /// Maps `path`. Failures become the caller's error type through `error(field, reason)`: the
    /// file cannot be opened, stat'ed or mapped (field "file"), it is not a regular file, or it
    /// has fewer than `minimumSize` bytes (the caller's `tooSmall(size)`).
    public static func map<E: Error>(_ path: String, minimumSize: Int, tooSmall: (Int) -> E,
                                     error: (_ field: String, _ reason: String) -> E) throws -> (base: UnsafeRawPointer, size: Int) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw error("file", "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw error("file", "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw error("file", "not a regular file") }
        let size = Int(st.st_size)
        guard size >= max(minimumSize, 1) else { throw tooSmall(size) }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw error("file", "cannot map: \(String(cString: strerror(errno)))")
        }
        return (UnsafeRawPointer(p), size)
    }
}
