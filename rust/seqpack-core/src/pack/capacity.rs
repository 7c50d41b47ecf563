//! A set of small integers (row capacities `0..=max_length`) with a fast "smallest member at or
//! above `n`" query: a hierarchical bitset, 64-way at every level, so each query touches at most
//! `log64(max_length)` words (3 for a 128k context). This is what makes best-fit O(N log L).

#[derive(Debug, Clone)]
pub struct CapacitySet {
    /// `levels[0]` has one bit per capacity; `levels[k + 1]` one bit per non-zero word of
    /// `levels[k]`. The last level is a single word.
    levels: Vec<Vec<u64>>,
}

impl CapacitySet {
    pub fn new(universe: usize) -> Self {
        let mut levels = Vec::new();
        let mut bits = universe.max(1);
        loop {
            let words = bits.div_ceil(64);
            levels.push(vec![0u64; words]);
            if words == 1 {
                break;
            }
            bits = words;
        }
        Self { levels }
    }

    pub fn insert(&mut self, value: usize) {
        let mut position = value;
        for level in &mut self.levels {
            let word = &mut level[position / 64];
            let was_empty = *word == 0;
            *word |= 1u64 << (position % 64);
            if !was_empty {
                return;
            }
            position /= 64;
        }
    }

    pub fn remove(&mut self, value: usize) {
        let mut position = value;
        for level in &mut self.levels {
            let word = &mut level[position / 64];
            *word &= !(1u64 << (position % 64));
            if *word != 0 {
                return;
            }
            position /= 64;
        }
    }

    /// The smallest member `>= value`, if any.
    pub fn next_at_or_after(&self, value: usize) -> Option<usize> {
        let mut level = 0;
        let mut position = value;
        // Climb until some word holds a member at or after `position`.
        loop {
            let words = self.levels.get(level)?;
            let index = position / 64;
            let word = *words.get(index)?;
            let masked = word & (!0u64 << (position % 64));
            if masked != 0 {
                position = index * 64 + masked.trailing_zeros() as usize;
                break;
            }
            level += 1;
            position = index + 1;
        }
        // Descend along the first set bit of each word below.
        while level > 0 {
            level -= 1;
            let word = self.levels[level][position];
            position = position * 64 + word.trailing_zeros() as usize;
        }
        Some(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn matches_a_btreeset(universe in 1usize..20_000, ops in prop::collection::vec((0u8..3, 0usize..20_000), 0..400)) {
            let mut set = CapacitySet::new(universe);
            let mut model = BTreeSet::new();
            for (op, raw) in ops {
                let value = raw % universe;
                match op {
                    0 => { set.insert(value); model.insert(value); }
                    1 => { set.remove(value); model.remove(&value); }
                    _ => {
                        prop_assert_eq!(set.next_at_or_after(value), model.range(value..).next().copied());
                    }
                }
            }
        }
    }

    #[test]
    fn query_past_the_end_is_none() {
        let mut set = CapacitySet::new(4097);
        set.insert(4096);
        assert_eq!(set.next_at_or_after(0), Some(4096));
        assert_eq!(set.next_at_or_after(4096), Some(4096));
        assert_eq!(set.next_at_or_after(4097), None);
        set.remove(4096);
        assert_eq!(set.next_at_or_after(0), None);
    }
}
