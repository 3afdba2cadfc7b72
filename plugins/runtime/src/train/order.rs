//! Which examples go into which batch, reproducibly: an epoch's order depends only on the
//! seed and the epoch, so a resumed run replays the same order and skips what it has done.

use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The example indices of epoch `epoch` (0-based), shuffled with `seed`.
///
/// Our own Fisher-Yates over ChaCha8's raw stream, so a `rand` upgrade cannot change the order.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// `order` cut into micro-batches of `batch_size` (the last may be shorter).
pub fn batches(order: &[usize], batch_size: usize) -> Vec<&[usize]> {
    order.chunks(batch_size.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_once_and_reproducible() {
        let a = epoch_order(100, 42, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 42, 0));
        assert_ne!(a, epoch_order(100, 42, 1), "epochs differ");
        assert_ne!(a, epoch_order(100, 43, 0), "seeds differ");
    }

    #[test]
    fn batches_cover_the_order() {
        let order: Vec<usize> = (0..10).collect();
        let b = batches(&order, 4);
        assert_eq!(b.len(), 3);
        assert_eq!(b[2], &[8, 9]);
        assert!(epoch_order(0, 1, 0).is_empty());
    }
}
