//! A mergeable latency sketch with 1% relative error (the DDSketch mapping:
//! log-spaced bins, `γ = (1 + α) / (1 − α)`, α = 0.01).
//!
//! Latencies are whole microseconds. A value `v ≥ 1` goes to bin
//! `⌈log_γ v⌉`; 0 has a bin of its own. A quantile is the representative
//! value of the bin holding its rank, `2γ^i / (γ + 1)`, which is within 1% of
//! every value of that bin, so within 1% of the exact quantile. Merging two
//! sketches adds their bin counts: exact, associative, order-free, so a
//! coarser rollup bucket is exactly the merge of the finer ones and a
//! recompute from raw rows gives the same bytes.
//!
//! Written here rather than taken from a crate: the crates keep float bins
//! and serialize through serde (tens of bytes per bin), while a rollup row
//! has a budget of ~100 bytes (issue 14: at most 1 MB of rollups per
//! URL-year). The encoding is compact and canonical: varints of
//! `(zero count, bin count, then per bin the index delta and its count)`.

use std::collections::BTreeMap;

/// Relative accuracy of every quantile.
pub const RELATIVE_ACCURACY: f64 = 0.01;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// Log-spaced bin counts of latencies in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sketch {
    zero: u64,
    bins: BTreeMap<i32, u64>,
}

impl Sketch {
    /// The bin of a latency of `us` ≥ 1 microseconds.
    fn index(us: u64) -> i32 {
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let i = ((us as f64).ln() / gamma().ln()).ceil() as i32;
        i
    }

    /// A value within the relative accuracy of every value of bin `i`.
    fn value(i: i32) -> f64 {
        2.0 * gamma().powi(i) / (gamma() + 1.0)
    }

    pub fn add(&mut self, us: u64) {
        if us == 0 {
            self.zero += 1;
        } else {
            *self.bins.entry(Self::index(us)).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Self) {
        self.zero += other.zero;
        for (i, n) in &other.bins {
            *self.bins.entry(*i).or_default() += n;
        }
    }

    pub fn count(&self) -> u64 {
        self.zero + self.bins.values().sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// The `q` quantile (0 ≤ q ≤ 1) in microseconds: the value of rank
    /// `⌊q (n − 1)⌋` in sorted order, within 1%. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64;
        if rank < self.zero {
            return Some(0.0);
        }
        let mut seen = self.zero;
        for (i, c) in &self.bins {
            seen += c;
            if seen > rank {
                return Some(Self::value(*i));
            }
        }
        self.bins.keys().next_back().map(|i| Self::value(*i))
    }

    /// The canonical bytes of this sketch.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.bins.len() * 3);
        put_varint(&mut out, self.zero);
        put_varint(&mut out, self.bins.len() as u64);
        let mut last = 0_i64;
        for (i, n) in &self.bins {
            let i = i64::from(*i);
            put_varint(&mut out, zigzag(i - last));
            put_varint(&mut out, *n);
            last = i;
        }
        out
    }

    /// Reads [`Self::encode`]'s bytes; `None` if they are not a sketch.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut at = 0;
        let zero = get_varint(bytes, &mut at)?;
        let len = get_varint(bytes, &mut at)?;
        let mut bins = BTreeMap::new();
        let mut last = 0_i64;
        for _ in 0..len {
            last += unzigzag(get_varint(bytes, &mut at)?);
            let n = get_varint(bytes, &mut at)?;
            bins.insert(i32::try_from(last).ok()?, n);
        }
        (at == bytes.len()).then_some(Self { zero, bins })
    }
}

fn zigzag(v: i64) -> u64 {
    #[allow(clippy::cast_sign_loss)]
    let z = ((v << 1) ^ (v >> 63)) as u64;
    z
}

fn unzigzag(z: u64) -> i64 {
    #[allow(clippy::cast_possible_wrap)]
    let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
    v
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        #[allow(clippy::cast_possible_truncation)]
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0_u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn exact(sorted: &[u64], q: f64) -> f64 {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
        #[allow(clippy::cast_precision_loss)]
        let v = sorted[rank] as f64;
        v
    }

    proptest! {
        #[test]
        fn quantiles_are_within_one_percent(mut values in prop::collection::vec(0_u64..100_000_000, 1..400)) {
            let mut s = Sketch::default();
            for v in &values {
                s.add(*v);
            }
            values.sort_unstable();
            for q in [0.0, 0.5, 0.9, 0.95, 0.99, 1.0] {
                let want = exact(&values, q);
                let got = s.quantile(q).unwrap();
                prop_assert!((got - want).abs() <= RELATIVE_ACCURACY * want + 1e-9,
                    "q {q}: {got} vs {want}");
            }
        }

        #[test]
        fn merging_equals_adding_everything_to_one(
            a in prop::collection::vec(0_u64..10_000_000, 0..100),
            b in prop::collection::vec(0_u64..10_000_000, 0..100),
        ) {
            let (mut sa, mut sb, mut all) = (Sketch::default(), Sketch::default(), Sketch::default());
            for v in &a { sa.add(*v); all.add(*v); }
            for v in &b { sb.add(*v); all.add(*v); }
            sa.merge(&sb);
            prop_assert_eq!(&sa, &all);
            prop_assert_eq!(sa.encode(), all.encode());
            prop_assert_eq!(Sketch::decode(&all.encode()), Some(all));
        }
    }

    #[test]
    fn garbage_does_not_decode_and_an_empty_sketch_has_no_quantile() {
        assert_eq!(Sketch::decode(&[0x80]), None);
        assert_eq!(Sketch::decode(&[0, 1]), None);
        assert_eq!(Sketch::decode(&[0, 0, 7]), None);
        assert_eq!(Sketch::default().quantile(0.5), None);
        assert_eq!(
            Sketch::decode(&Sketch::default().encode()),
            Some(Sketch::default())
        );
    }

    #[test]
    fn a_typical_hour_of_latencies_encodes_small() {
        let mut s = Sketch::default();
        for i in 0..60 {
            s.add(20_000 + (i * 137) % 8_000);
        }
        assert!(s.encode().len() < 64, "{} bytes", s.encode().len());
    }
}
