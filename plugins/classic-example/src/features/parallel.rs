//! Thread helpers shared by the vectorizer and the solver: deterministic parallel maps over
//! contiguous index ranges, whose results never depend on the number of threads.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// More threads than this never helps and could exhaust the system.
const MAX_THREADS: usize = 256;

/// Number of worker threads to use: `requested`, or every core when it is 0.
pub(crate) fn resolve_threads(requested: usize) -> usize {
    let threads = match requested {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    threads.min(MAX_THREADS)
}

/// Splits `0..n` into `parts` contiguous ranges of nearly equal size (none empty unless n is 0).
pub(crate) fn split_range(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| (n * p / parts)..(n * (p + 1) / parts))
        .collect()
}

/// Runs `f` on every range using up to `threads` threads and returns the results in range
/// order, so the outcome never depends on the number of threads. Workers pick the next
/// unclaimed range, which balances uneven ranges.
pub(crate) fn map_ranges<T, F>(ranges: &[Range<usize>], threads: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(Range<usize>) -> T + Sync,
{
    let workers = threads.clamp(1, ranges.len().max(1));
    if workers == 1 {
        return ranges.iter().cloned().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(range) = ranges.get(i) else {
                return done;
            };
            done.push((i, f(range.clone())));
        }
    };
    let mut tagged: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    tagged.sort_unstable_by_key(|(i, _)| *i);
    tagged.into_iter().map(|(_, t)| t).collect()
}
