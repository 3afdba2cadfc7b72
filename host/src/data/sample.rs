//! Deterministic sampling and the stratified validation split, driven only by a seeded
//! ChaCha8 stream.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Independent random streams for the separate draws, so that e.g. changing
/// `train_sample_size` does not change which records are held out for validation.
pub(super) const STREAM_SPLIT: u64 = 1;
pub(super) const STREAM_TRAIN_SAMPLE: u64 = 2;
pub(super) const STREAM_VALID_SAMPLE: u64 = 3;

pub(super) fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A uniform number below `n` (n > 0), by rejection: defined only by the ChaCha8 stream.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let n = n as u64;
    let limit = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < limit {
            return (x % n) as usize;
        }
    }
}

pub(super) fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

/// `k` distinct indices below `n`, in increasing order (all of them when `k >= n`).
pub(super) fn sample_indices(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    if k >= n {
        return all;
    }
    for i in 0..k {
        let j = i + below(rng, n - i);
        all.swap(i, j);
    }
    all.truncate(k);
    all.sort_unstable();
    all
}

/// Hold out `fraction` of each label's records (at least one record of each label stays in
/// training). Returns (train, valid) positions, each in increasing order.
pub(super) fn split_stratified(
    label_of: &[usize],
    n_labels: usize,
    fraction: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, Vec<usize>) {
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); n_labels];
    for (i, &label) in label_of.iter().enumerate() {
        if let Some(group) = groups.get_mut(label) {
            group.push(i);
        }
    }
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for mut group in groups {
        shuffle(&mut group, rng);
        let held =
            ((group.len() as f64 * fraction).round() as usize).min(group.len().saturating_sub(1));
        valid.extend_from_slice(&group[..held]);
        train.extend_from_slice(&group[held..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

pub(super) fn percent(fraction: f64) -> String {
    format!("{}%", (fraction * 10_000.0).round() / 100.0)
}
