//! One shard's table of callers: open addressing over cache-line buckets.
//!
//! A bucket is one 64-byte cache line holding four (caller, TAT) slots, so finding a caller
//! reads one line: the caller's home bucket, or on overflow the next one (linear probing over
//! buckets). The table grows ×2 above half load, where a bucket overflows rarely. Slots are
//! never freed one by one; [`Table::retain`] rebuilds the table instead, so the occupied
//! slots of a bucket always come first and an empty slot ends every search.
//!
//! The buckets live in one boxed slice on the heap. An earlier version put tables of 2 MiB and
//! more on transparent huge pages and prefetched the home bucket under the lock; on the request
//! path (one caller, a hot line) neither showed in instructions or throughput, so both went with
//! the three crates they needed (DESIGN.md 21).

/// Stands for "no caller" in a slot. [`Table::tat`] takes caller ids other than this.
pub(super) const EMPTY: u64 = 0;
/// Slots in one bucket: four (caller, TAT) pairs of 16 bytes fill a 64-byte cache line.
const SLOTS: usize = 4;
/// Buckets of a table before its first growth.
const INITIAL_BUCKETS: usize = 4;

/// Four callers and their theoretical arrival times, in one cache line (the alignment makes
/// every allocation of buckets start on a line). The ids come first so the four comparisons
/// of a search read adjacent words.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    callers: [u64; SLOTS],
    tats: [u64; SLOTS],
}

impl Bucket {
    /// Four empty slots.
    const EMPTY: Self = Self {
        callers: [EMPTY; SLOTS],
        tats: [0; SLOTS],
    };
}

/// The callers of one shard and their TATs.
pub(super) struct Table {
    /// A power of two of buckets, each on its own cache line (the allocation keeps the
    /// bucket's alignment).
    buckets: Box<[Bucket]>,
    /// Occupied slots.
    used: usize,
}

impl Table {
    pub(super) fn new() -> Self {
        Self::with_buckets(INITIAL_BUCKETS)
    }

    fn with_buckets(count: usize) -> Self {
        Self {
            buckets: vec![Bucket::EMPTY; count].into_boxed_slice(),
            used: 0,
        }
    }

    /// How many callers the table tracks (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.used
    }

    /// The TAT of `caller`, inserting the caller with `tat` if it is not tracked yet.
    pub(super) fn tat(&mut self, caller: u64, tat: u64) -> &mut u64 {
        debug_assert_ne!(caller, EMPTY);
        let (mut bucket, mut slot) = find(&self.buckets, caller);
        if self.buckets[bucket].callers[slot] == EMPTY {
            if (self.used + 1) * 2 > self.buckets.len() * SLOTS {
                self.rebuild(self.buckets.len() * 2, |_| true);
                (bucket, slot) = find(&self.buckets, caller);
            }
            self.buckets[bucket].callers[slot] = caller;
            self.buckets[bucket].tats[slot] = tat;
            self.used += 1;
        }
        &mut self.buckets[bucket].tats[slot]
    }

    /// Keeps only the callers whose TAT `keep` accepts, in a table sized for them: at most a
    /// third full, so their number may grow by half before the table grows.
    pub(super) fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        let kept = self.occupied().filter(|&(_, tat)| keep(tat)).count();
        let mut count = INITIAL_BUCKETS;
        while (kept + kept / 2) * 2 > count * SLOTS {
            count *= 2;
        }
        self.rebuild(count, keep);
    }

    /// Moves the callers `keep` accepts into a new table of `count` buckets.
    fn rebuild(&mut self, count: usize, keep: impl Fn(u64) -> bool) {
        let old = std::mem::replace(self, Self::with_buckets(count));
        for (caller, tat) in old.occupied().filter(|&(_, tat)| keep(tat)) {
            let (bucket, slot) = find(&self.buckets, caller);
            self.buckets[bucket].callers[slot] = caller;
            self.buckets[bucket].tats[slot] = tat;
            self.used += 1;
        }
    }

    /// Every (caller, TAT) in the table.
    fn occupied(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets.iter().flat_map(|bucket| {
            bucket
                .callers
                .iter()
                .zip(bucket.tats)
                .filter(|&(&caller, _)| caller != EMPTY)
                .map(|(&caller, tat)| (caller, tat))
        })
    }
}

/// The bucket where the search for `caller` starts among `count` buckets. Caller ids are
/// uniform hashes: multiply-shift maps one onto any count without a division, from its high
/// bits.
fn home(caller: u64, count: usize) -> usize {
    ((u128::from(caller) * count as u128) >> 64) as usize
}

/// The (bucket, slot) of `caller`, or of the empty slot where it goes. The table is at most
/// half full, so a search ends.
fn find(buckets: &[Bucket], caller: u64) -> (usize, usize) {
    let mut index = home(caller, buckets.len());
    loop {
        let bucket = &buckets[index];
        if let Some(slot) = bucket
            .callers
            .iter()
            .position(|&c| c == caller || c == EMPTY)
        {
            return (index, slot);
        }
        index += 1;
        if index == buckets.len() {
            index = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_one_cache_line() {
        assert_eq!(size_of::<Bucket>(), 64);
        assert_eq!(align_of::<Bucket>(), 64);
        let table = Table::new();
        assert_eq!(table.buckets.as_ptr().addr() % 64, 0);
    }

    #[test]
    fn full_buckets_overflow_into_the_next_and_wrap_around() {
        let mut table = Table::with_buckets(INITIAL_BUCKETS);
        // High bits pick the home bucket: all six go to the last bucket of four, which holds
        // four of them; the other two wrap around into the first bucket.
        let last = |i: u64| u64::MAX - i;
        for i in 0..6 {
            *table.tat(last(i), 0) = 100 + i;
        }
        assert_eq!(
            table.buckets[3].callers,
            [last(0), last(1), last(2), last(3)]
        );
        assert_eq!(table.buckets[0].callers[..2], [last(4), last(5)]);
        for i in 0..6 {
            assert_eq!(*table.tat(last(i), 0), 100 + i, "caller {i}");
        }
        assert_eq!(table.len(), 6);
    }

    #[test]
    fn grows_above_half_load_and_keeps_every_caller() {
        let mut table = Table::new();
        let callers: Vec<u64> = (1..=1000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        for (i, &caller) in callers.iter().enumerate() {
            *table.tat(caller, 0) = i as u64;
            assert!(table.used * 2 <= table.buckets.len() * SLOTS);
        }
        // The home bucket of the highest id is the last one, in any size.
        assert_eq!(home(u64::MAX, table.buckets.len()), table.buckets.len() - 1);
        assert_eq!(table.len(), 1000);
        for (i, &caller) in callers.iter().enumerate() {
            assert_eq!(*table.tat(caller, u64::MAX), i as u64);
        }
    }

    #[test]
    fn a_large_table_keeps_every_caller_and_shrinks_back() {
        let mut table = Table::new();
        let callers: Vec<u64> = (1..=40_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        for &caller in &callers {
            *table.tat(caller, 0) = caller / 2;
        }
        let grown = table.buckets.len();
        assert!(size_of_val(&*table.buckets) >= 2 << 20);
        assert_eq!(table.buckets.as_ptr().addr() % 64, 0);
        for &caller in &callers {
            assert_eq!(*table.tat(caller, 0), caller / 2);
        }
        table.retain(|tat| tat % 32 == 0);
        assert!(table.buckets.len() < grown, "a 32nd needs fewer buckets");
        for &caller in &callers {
            let kept = (caller / 2) % 32 == 0;
            assert_eq!(*table.tat(caller, 1) == caller / 2, kept);
        }
    }

    #[test]
    fn retain_drops_the_rest_and_shrinks() {
        let mut table = Table::new();
        for caller in 1..=1000u64 {
            table.tat(caller.wrapping_mul(0x9e37_79b9_7f4a_7c15), caller);
        }
        let grown = table.buckets.len();
        table.retain(|tat| tat % 100 == 0);
        assert_eq!(table.len(), 10);
        assert!(table.buckets.len() < grown);
        assert_eq!(
            *table.tat(100u64.wrapping_mul(0x9e37_79b9_7f4a_7c15), 0),
            100
        );
        assert_eq!(*table.tat(101u64.wrapping_mul(0x9e37_79b9_7f4a_7c15), 7), 7);
        table.retain(|_| false);
        assert_eq!(table.len(), 0);
        assert_eq!(table.buckets.len(), INITIAL_BUCKETS);
    }
}
