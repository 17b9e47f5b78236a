#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernelsSupport

/// Persistent worker threads for `parallelFor`: a call publishes one job (a body and a number of
/// chunks), wakes the workers and takes a share of the chunks itself; workers claim chunks one at
/// a time from a shared counter until none are left. Between jobs workers spin for a while
/// (`spinNanoseconds`), then sleep on a condition variable. A call allocates nothing.
///
/// The pool grows on demand to `threads - 1` workers; a call with fewer threads lets only the
/// first `threads - 1` workers take part. One job runs at a time: a call made while another is
/// running (another thread, or a nested call from inside a job) runs its chunks serially on the
/// calling thread — correct, as every chunk's result is independent of who computes it.
public final class ThreadPool: @unchecked Sendable {
    /// The process-wide pool the kernels use.
    public static let shared = ThreadPool()

    /// How long an idle worker spins before it sleeps: long enough to bridge the serial work
    /// between two parallel regions of a forward pass, short enough not to burn a core when idle.
    public let spinNanoseconds: UInt64

    private struct Job {
        /// The current job's body; valid while any of its chunks is unfinished.
        var body: ((Int) -> Void)?
        /// Workers with an index below this take part in the current job.
        var workerLimit = 0
    }

    /// (generation << 32) | chunks not yet claimed. Chunks are claimed from the top down.
    private let ticket: UnsafeMutablePointer<specdec_atomic64>
    /// Chunks of the current job that have finished.
    private let finished: UnsafeMutablePointer<specdec_atomic64>
    /// Workers asleep (or about to be) on `cond`.
    private let sleepers: UnsafeMutablePointer<specdec_atomic64>
    /// 1 while a job runs (a try-lock for `parallelFor`).
    private let busy: UnsafeMutablePointer<specdec_atomic64>
    private let job: UnsafeMutablePointer<Job>
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>
    /// Only touched by the thread holding `busy`.
    private var generation: Int64 = 0
    private var workerCount = 0

    public init(spinNanoseconds: UInt64 = 200_000) {
        self.spinNanoseconds = spinNanoseconds
        func atomic() -> UnsafeMutablePointer<specdec_atomic64> {
            let p = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<specdec_atomic64>.stride, alignment: 64)
                .bindMemory(to: specdec_atomic64.self, capacity: 1)
            p.initialize(to: specdec_atomic64())
            return p
        }
        ticket = atomic(); finished = atomic(); sleepers = atomic(); busy = atomic()
        job = .allocate(capacity: 1)
        job.initialize(to: Job())
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    // The shared pool lives for the whole process; other pools' workers would keep running
    // (and referencing them) forever, so a pool is never deallocated either.

    /// Workers started so far (read it while no job is being started on another thread).
    public var workers: Int { workerCount }

    /// Runs `body(i)` for every `i` in `0..<count`, each exactly once, on up to `threads`
    /// threads (the caller included); returns when all are done. The order and the thread of
    /// each call are unspecified.
    public func parallelFor(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if threads <= 1 || count == 1 || count >= 1 << 31 || !tryAcquire() {
            for i in 0..<count { body(i) }
            return
        }
        defer { specdec_atomic_store(busy, 0) }
        let helpers = min(threads, count) - 1
        if workerCount < helpers { startWorkers(helpers) }
        withoutActuallyEscaping(body) { body in
            job.pointee.body = body
            job.pointee.workerLimit = helpers
            specdec_atomic_store(finished, 0)
            generation += 1
            let gen = generation
            specdec_atomic_store(ticket, gen << 32 | Int64(count))
            if specdec_atomic_load(sleepers) > 0 {
                pthread_mutex_lock(mutex)
                pthread_cond_broadcast(cond)
                pthread_mutex_unlock(mutex)
            }
            runChunks(generation: gen)
            // Wait for chunks other threads are still running; yield now and then, in case one
            // of them was preempted in favour of this thread.
            var spins = 0
            while specdec_atomic_load(finished) < Int64(count) {
                specdec_cpu_relax()
                spins += 1
                if spins & 63 == 0 { sched_yield() }
            }
            job.pointee.body = nil
        }
    }

    private func tryAcquire() -> Bool {
        var expected: Int64 = 0
        return specdec_atomic_compare_exchange(busy, &expected, 1) != 0
    }

    /// Claims and runs chunks of job `generation` until none are left.
    private func runChunks(generation gen: Int64) {
        while true {
            var t = specdec_atomic_load(ticket)
            guard t >> 32 == gen, t & 0xffff_ffff > 0 else { return }
            if specdec_atomic_compare_exchange(ticket, &t, t - 1) != 0 {
                runChunk(Int(t & 0xffff_ffff) - 1)
                specdec_atomic_fetch_add(finished, 1)
            }
        }
    }

    /// Not inlined, so that the body's context is released before the chunk counts as finished.
    @inline(never)
    private func runChunk(_ i: Int) {
        job.pointee.body!(i)
    }

    private final class WorkerContext {
        let pool: ThreadPool
        let index: Int
        let generation: Int64
        init(pool: ThreadPool, index: Int, generation: Int64) { self.pool = pool; self.index = index; self.generation = generation }
    }

    private func startWorkers(_ n: Int) {
        while workerCount < n {
            let ctx = Unmanaged.passRetained(WorkerContext(pool: self, index: workerCount, generation: generation)).toOpaque()
            var attr = pthread_attr_t()
            pthread_attr_init(&attr)
            pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
#if canImport(Glibc)
            var tid = pthread_t()
#else
            var tid: pthread_t? = nil
#endif
            let rc = pthread_create(&tid, &attr, { arg in
                let ctx = Unmanaged<WorkerContext>.fromOpaque(arg!).takeRetainedValue()
                ctx.pool.workerLoop(index: ctx.index, seen: ctx.generation)   // never returns
            }, ctx)
            pthread_attr_destroy(&attr)
            if rc != 0 {
                Unmanaged<WorkerContext>.fromOpaque(ctx).release()
                return   // run with the workers we have
            }
            workerCount += 1
        }
    }


    /// `seen`: the last generation published before this worker started.
    private func workerLoop(index: Int, seen: Int64) -> Never {
        var seen = seen
        while true {
            // Wait for a new job: spin (yielding now and then, so that a busy machine's other
            // threads, this process's caller included, are not starved), then sleep.
            var t = specdec_atomic_load(ticket)
            if t >> 32 == seen {
                let start = monotonicNanoseconds()
                var spins = 0
                while t >> 32 == seen {
                    specdec_cpu_relax()
                    spins += 1
                    if spins & 63 == 0 { sched_yield() }
                    if spins & 255 == 0, monotonicNanoseconds() &- start > spinNanoseconds {
                        pthread_mutex_lock(mutex)
                        specdec_atomic_fetch_add(sleepers, 1)
                        while specdec_atomic_load(ticket) >> 32 == seen {
                            pthread_cond_wait(cond, mutex)
                        }
                        specdec_atomic_fetch_add(sleepers, -1)
                        pthread_mutex_unlock(mutex)
                    }
                    t = specdec_atomic_load(ticket)
                }
            }
            seen = t >> 32
            if index < job.pointee.workerLimit {
                runChunks(generation: seen)
            }
        }
    }
}

/// Runs `body(i)` for `i` in `0..<count` on up to `threads` threads of `ThreadPool.shared`.
@inline(__always)
public func parallelFor(_ count: Int, threads: Int, _ body: (Int) -> Void) {
    ThreadPool.shared.parallelFor(count, threads: threads, body)
}
