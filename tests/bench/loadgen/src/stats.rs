//! Latency percentiles: nearest rank over every recorded sample (no histogram buckets,
//! no interpolation), so the figure reported is always a latency that was measured.

/// A percentile in thousandths of a percent (`99_900` is p99.9), so that ranks come out
/// of integer arithmetic and never from a float that lands just above an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantile(u32);

impl Quantile {
    pub const P50: Self = Self(50_000);
    pub const P90: Self = Self(90_000);
    pub const P99: Self = Self(99_000);
    pub const P999: Self = Self(99_900);
    pub const MAX: Self = Self(100_000);

    /// `thousandths` of a percent, at most 100,000.
    #[cfg(test)]
    pub const fn new(thousandths: u32) -> Self {
        assert!(thousandths <= 100_000);
        Self(thousandths)
    }
}

/// The nearest-rank percentile of `sorted` (ascending): the smallest sample such that at
/// least `q` of the samples are at or below it. `None` when there are no samples; p0 is
/// the minimum.
pub fn percentile(sorted: &[u64], q: Quantile) -> Option<u64> {
    let n = sorted.len() as u128;
    if n == 0 {
        return None;
    }
    // rank = ceil(q * n / 100%), at least 1.
    let rank = (u128::from(q.0) * n).div_ceil(100_000).max(1);
    let index = usize::try_from(rank - 1).unwrap_or(usize::MAX);
    sorted.get(index).copied()
}

/// The figures reported for one URL, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// Sorts `samples` and summarises them; `None` when empty.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    samples.sort_unstable();
    Some(Summary {
        count: samples.len(),
        p50: percentile(samples, Quantile::P50)?,
        p90: percentile(samples, Quantile::P90)?,
        p99: percentile(samples, Quantile::P99)?,
        p999: percentile(samples, Quantile::P999)?,
        max: percentile(samples, Quantile::MAX)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_to(n: u64) -> Vec<u64> {
        (1..=n).collect()
    }

    #[test]
    fn nearest_rank_on_a_hundred_samples() {
        let s = one_to(100);
        assert_eq!(percentile(&s, Quantile::P50), Some(50));
        assert_eq!(percentile(&s, Quantile::P90), Some(90));
        assert_eq!(percentile(&s, Quantile::P99), Some(99));
        // 99.9 % of 100 samples is 99.9: the 100th.
        assert_eq!(percentile(&s, Quantile::P999), Some(100));
        assert_eq!(percentile(&s, Quantile::MAX), Some(100));
        assert_eq!(percentile(&s, Quantile::new(0)), Some(1));
    }

    #[test]
    fn p999_of_a_thousand_is_the_999th_not_the_last() {
        // A float rank (0.999 * 1000 = 999.0000000000001, ceil 1000) would say 1000.
        let s = one_to(1000);
        assert_eq!(percentile(&s, Quantile::P999), Some(999));
        assert_eq!(percentile(&s, Quantile::P99), Some(990));
    }

    #[test]
    fn ranks_round_up() {
        // 50 % of 3 samples is 1.5 samples: the 2nd; 99 % of 10 is 9.9: the 10th.
        assert_eq!(percentile(&[10, 20, 30], Quantile::P50), Some(20));
        assert_eq!(percentile(&one_to(10), Quantile::P99), Some(10));
        assert_eq!(percentile(&one_to(10), Quantile::P90), Some(9));
    }

    #[test]
    fn one_sample_and_none() {
        assert_eq!(percentile(&[7], Quantile::P50), Some(7));
        assert_eq!(percentile(&[7], Quantile::P999), Some(7));
        assert_eq!(percentile(&[], Quantile::P50), None);
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn a_single_stall_shows_in_the_tail_only() {
        // 6,000 requests at 2 ms, 61 of them stalled at 500 ms: p99 sees the stall
        // (more than 1 % stalled), p90 does not.
        let mut s = vec![2_000; 6_000];
        for v in s.iter_mut().take(61) {
            *v = 500_000;
        }
        let sum = summarize(&mut s).unwrap();
        assert_eq!(sum.count, 6_000);
        assert_eq!((sum.p50, sum.p90), (2_000, 2_000));
        assert_eq!((sum.p99, sum.max), (500_000, 500_000));
    }

    #[test]
    fn summarize_sorts() {
        let mut s = vec![5, 1, 4, 2, 3];
        let sum = summarize(&mut s).unwrap();
        assert_eq!(s, vec![1, 2, 3, 4, 5]);
        assert_eq!((sum.p50, sum.max, sum.count), (3, 5, 5));
    }
}
