//! CPU-heavy work (a whole snapshot's verification or encoding, O(state))
//! off the runtime's workers on a real validator; inline in the
//! simulation, whose runtime must stay deterministic: a blocking-pool
//! thread is scheduled by the operating system, and while it runs the
//! paused simulated clock may move on by however long it takes in real
//! time (`chaos/src/sim`, which calls [`run_inline`]).

use std::sync::atomic::{AtomicBool, Ordering};

static INLINE: AtomicBool = AtomicBool::new(false);

/// Runs every later [`run`] on the calling task (the simulation).
pub fn run_inline(inline: bool) {
    INLINE.store(inline, Ordering::Relaxed);
}

/// Runs `f` on the blocking pool, or inline after [`run_inline`]; an error
/// says the blocking task did not finish (it panicked or the runtime is
/// shutting down).
pub async fn run<T, F>(f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if INLINE.load(Ordering::Relaxed) {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_on_the_pool_or_inline_with_the_same_result() {
        let on_pool = super::run(|| std::thread::current().id()).await;
        assert_ne!(on_pool, Ok(std::thread::current().id()));
        assert_eq!(super::run(|| 6 * 7).await, Ok(42));
    }
}
