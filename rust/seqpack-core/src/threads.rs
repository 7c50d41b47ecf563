//! Rayon's threads after a `fork`.
//!
//! A forked process has only the thread that called `fork`: the workers of rayon's global pool,
//! and of any pool built before, are gone, while the pool's state says they are there. Parallel
//! work sent to them waits forever. torch's `DataLoader` forks its workers, so a loader that
//! materialised batches in them hung once the parent had used rayon (an `encode`, a `pack` of
//! 64 rows or more).
//!
//! Every parallel section of the crate runs through [`install`]. In the process that loaded the
//! crate it runs in place, on the global pool. After [`forked`] (the Python package calls it in
//! every child, through `os.register_at_fork`) it runs on a pool of that process's own, at the
//! default size, built by the first parallel section that needs it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Forks since the crate was loaded (0: the process that loaded it).
static GENERATION: AtomicUsize = AtomicUsize::new(0);

/// The own pool of each generation. A child only ever builds the slot of its own generation,
/// which no thread of its parent touched, so no lock held at the fork can be met here; the
/// pools are never dropped (a pool of an older generation has no threads to tell).
static OWN: [OnceLock<Option<rayon::ThreadPool>>; 64] = [const { OnceLock::new() }; 64];

/// Call in the child right after a `fork`: rayon's pools from before are not to be used.
pub fn forked() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Forks since the crate was loaded: a pool built in an older generation has no threads.
pub fn generation() -> usize {
    GENERATION.load(Ordering::SeqCst)
}

/// Run `work`, which may use rayon's parallel iterators, on a pool whose threads exist.
pub fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let generation = generation();
    if generation == 0 {
        return work();
    }
    let own = OWN.get(generation).map(|slot| slot.get_or_init(|| rayon::ThreadPoolBuilder::new().build().ok()));
    match own {
        Some(Some(pool)) => pool.install(work),
        // Forked 64 times over, or no thread could start: a pool of the calling thread alone,
        // for this section (parallel iterators then run one item after another).
        _ => match rayon::ThreadPoolBuilder::new().num_threads(1).use_current_thread().build() {
            Ok(pool) => pool.install(work),
            Err(_) => work(),
        },
    }
}
