//! A bounded, order-preserving parallel map for the per-certificate work of
//! batch verification (signature decompression and subgroup checks,
//! hashing to the curve). Scoped std threads: no runtime, no tokio.

use std::num::NonZeroUsize;

/// Most threads one call uses.
pub const MAX_VERIFY_THREADS: usize = 8;
/// Below this many items the work stays on the calling thread.
pub const MIN_ITEMS_PER_THREAD: usize = 32;

/// `items.iter().map(f).collect()`, spread over up to
/// `min(available cores, MAX_VERIFY_THREADS)` threads, results in input order.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = cores
        .min(MAX_VERIFY_THREADS)
        .min(items.len() / MIN_ITEMS_PER_THREAD)
        .max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(results) => results,
                // A panic in `f` is a bug; re-raise it on the caller's thread.
                Err(payload) => std::panic::resume_unwind(payload),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_for_small_and_large_inputs() {
        for n in [0usize, 1, 31, 32, 100, 1000] {
            let items: Vec<usize> = (0..n).collect();
            assert_eq!(
                map(&items, |x| x * 3),
                items.iter().map(|x| x * 3).collect::<Vec<_>>()
            );
        }
    }
}
