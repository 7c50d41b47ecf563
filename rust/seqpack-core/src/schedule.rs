//! Packing as a pure function of (lengths, options, seed, epoch), for training: the global plan
//! (best fit over the whole dataset, computed once), each epoch's seeded order of its rows, the
//! cut of that order into global steps, and each rank's share of a step.
//!
//! What a trainer relies on, and why it holds:
//! - **Equal steps on every rank, known before training**: every global step holds
//!   `rows_per_batch × world_size` rows; the last, incomplete step is filled with empty rows
//!   (`Remainder::Pad`: they train nothing, so no rank waits on another) or left out
//!   (`Remainder::Drop`: its rows are counted and reported).
//! - **The same rows for any number of workers, threads or machines**: a step's rows depend on
//!   the plan, the seed, the epoch and the global batch size only; which rank gets which of
//!   them depends on the world size too, but the set of rows in step `t` does not, so a run
//!   can resume on another number of GPUs with the same global batch.
//! - **Balance, on request**: within a step, rows go to ranks so the largest rank's cost
//!   (tokens, or Σ len² of its sequences, the attention work) is as small as a greedy
//!   longest-first assignment makes it.

use crate::error::{Error, Result};
use crate::options::{at_least, invalid};
use crate::pack::options::PlanOptions;
use crate::pack::plan::{plan, Plan};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Deserialize;

/// What happens to the last global step of an epoch when the rows do not fill it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remainder {
    /// Fill it with empty rows (no token, no loss).
    Pad,
    /// Leave its rows out of this epoch (the order changes every epoch, so other rows are
    /// left out next time); they are counted.
    Drop,
}

/// The cost balanced across ranks within a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Real tokens.
    Tokens,
    /// Σ len² over a row's sequences: attention work with block-diagonal masks.
    Attention,
}

/// Everything a schedule needs besides the lengths.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawScheduleOptions")]
pub struct ScheduleOptions {
    /// How the global plan is made (`seed` and `pad_rows_to_multiple_of` are not used: the
    /// schedule shuffles per epoch and pads per step).
    pub plan: PlanOptions,
    /// Rows in one micro-batch of one rank.
    pub rows_per_batch: usize,
    pub world_size: usize,
    pub seed: u64,
    pub remainder: Remainder,
    pub balance: Option<Balance>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduleOptions {
    plan: PlanOptions,
    batch_rows: Option<i64>,
    batch_tokens: Option<i64>,
    world_size: i64,
    seed: u64,
    remainder: String,
    balance: Option<String>,
}

impl TryFrom<RawScheduleOptions> for ScheduleOptions {
    type Error = Error;

    fn try_from(raw: RawScheduleOptions) -> Result<Self> {
        let max_length = raw.plan.max_length;
        let rows_per_batch = match (raw.batch_rows, raw.batch_tokens) {
            (Some(rows), None) => at_least("batch_rows", rows, 1)?,
            (None, Some(tokens)) => {
                let tokens = at_least("batch_tokens", tokens, max_length).map_err(|_| {
                    invalid(
                        "batch_tokens",
                        format!("must be at least max_length ({max_length}) so a row fits, got {tokens}"),
                    )
                })?;
                tokens / max_length
            }
            _ => return Err(invalid("batch_rows", "give exactly one of batch_rows and batch_tokens")),
        };
        let remainder = match raw.remainder.as_str() {
            "pad" => Remainder::Pad,
            "drop" => Remainder::Drop,
            other => return Err(invalid("remainder", format!("unknown policy '{other}'; expected 'pad' or 'drop'"))),
        };
        let balance = match raw.balance.as_deref() {
            None => None,
            Some("tokens") => Some(Balance::Tokens),
            Some("attention") => Some(Balance::Attention),
            Some(other) => {
                return Err(invalid(
                    "balance",
                    format!("unknown cost '{other}'; expected 'tokens', 'attention' or None"),
                ))
            }
        };
        if raw.plan.seed.is_some() || raw.plan.pad_rows_to_multiple_of != 1 {
            return Err(invalid("seed", "a schedule shuffles per epoch with its own seed; plan options carry none"));
        }
        Ok(Self {
            plan: raw.plan,
            rows_per_batch,
            world_size: at_least("world_size", raw.world_size, 1)?,
            seed: raw.seed,
            remainder,
            balance,
        })
    }
}

/// A row of a step: a row of the plan, or an empty row that pads the last step.
pub type StepRow = Option<u32>;

/// The global plan and how epochs walk it.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub plan: Plan,
    pub options: ScheduleOptions,
}

impl Schedule {
    /// Plan the rows of sequences of the given lengths, once for every epoch.
    pub fn new(lengths: &[u32], options: ScheduleOptions) -> Result<Self> {
        let plan = plan(lengths, &options.plan)?;
        if plan.num_rows() > u32::MAX as usize {
            return Err(invalid("max_length", "the plan has more than 2^32 rows; use a longer max_length"));
        }
        Ok(Self { plan, options })
    }

    pub fn rows(&self) -> usize {
        self.plan.num_rows()
    }

    /// Rows in one global step: one micro-batch of every rank.
    pub fn rows_per_step(&self) -> usize {
        self.options.rows_per_batch * self.options.world_size
    }

    /// Global steps in an epoch: the number of micro-batches every rank gets.
    pub fn steps(&self) -> usize {
        match self.options.remainder {
            Remainder::Pad => self.rows().div_ceil(self.rows_per_step()),
            Remainder::Drop => self.rows() / self.rows_per_step(),
        }
    }

    /// Rows of the plan left out of every epoch by `Remainder::Drop` (0 with `Pad`).
    pub fn dropped_rows_per_epoch(&self) -> usize {
        self.rows() - (self.steps() * self.rows_per_step()).min(self.rows())
    }

    /// Empty rows added to an epoch by `Remainder::Pad` (0 with `Drop`).
    pub fn padding_rows_per_epoch(&self) -> usize {
        (self.steps() * self.rows_per_step()).saturating_sub(self.rows())
    }

    /// The order of the plan's rows in `epoch`: a seeded shuffle, its own stream per epoch,
    /// the same on every machine.
    pub fn epoch_order(&self, epoch: u64) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.rows() as u32).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.options.seed);
        rng.set_stream(epoch);
        order.shuffle(&mut rng);
        order
    }

    /// The rows of global step `step` of the epoch whose order is `order`, in order; `None`
    /// pads the last step.
    pub fn step_rows(&self, order: &[u32], step: usize) -> Result<Vec<StepRow>> {
        if step >= self.steps() {
            return Err(invalid("step", format!("the epoch has {} steps, got step {step}", self.steps())));
        }
        let size = self.rows_per_step();
        let start = step * size;
        Ok((start..start + size).map(|at| order.get(at).copied()).collect())
    }

    /// The rows `rank` gets in global step `step`: `rows_per_batch` of them, in order.
    pub fn rank_rows(&self, order: &[u32], step: usize, rank: usize) -> Result<Vec<StepRow>> {
        if rank >= self.options.world_size {
            return Err(invalid("rank", format!("must be below world_size ({}), got {rank}", self.options.world_size)));
        }
        let rows = self.step_rows(order, step)?;
        let per_rank = self.options.rows_per_batch;
        Ok(match self.options.balance {
            None => rows[rank * per_rank..(rank + 1) * per_rank].to_vec(),
            Some(balance) => {
                let assignment = self.balanced(&rows, balance);
                rows.iter().zip(&assignment).filter(|(_, &r)| r == rank).map(|(&row, _)| row).collect()
            }
        })
    }

    /// The cost of a step row under `balance`.
    pub fn row_cost(&self, row: StepRow, balance: Balance) -> u64 {
        row.map_or(0, |row| {
            self.plan
                .row(row as usize)
                .iter()
                .map(|p| match balance {
                    Balance::Tokens => u64::from(p.seq_len),
                    Balance::Attention => u64::from(p.seq_len).pow(2),
                })
                .sum()
        })
    }

    /// The rank of each of a step's rows: longest first, each to the least loaded rank with
    /// room (ties: the lower rank), so every rank gets exactly `rows_per_batch`.
    fn balanced(&self, rows: &[StepRow], balance: Balance) -> Vec<usize> {
        let ranks = self.options.world_size;
        let mut by_cost: Vec<(u64, usize)> =
            rows.iter().enumerate().map(|(at, &row)| (self.row_cost(row, balance), at)).collect();
        by_cost.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut load = vec![0u64; ranks];
        let mut count = vec![0usize; ranks];
        let mut assignment = vec![0usize; rows.len()];
        for (cost, at) in by_cost {
            let rank = (0..ranks)
                .filter(|&r| count[r] < self.options.rows_per_batch)
                .min_by_key(|&r| (load[r], r))
                .expect("a step holds exactly rows_per_batch rows per rank");
            load[rank] += cost;
            count[rank] += 1;
            assignment[at] = rank;
        }
        assignment
    }

    /// How uneven an epoch is under `balance`: Σ over steps of the largest rank's cost, over
    /// Σ over steps of the mean rank cost (1.0 = perfectly even), with and without balancing.
    pub fn imbalance(&self, order: &[u32], balance: Balance) -> (f64, f64) {
        let ranks = self.options.world_size;
        let per_rank = self.options.rows_per_batch;
        let (mut largest_plain, mut largest_balanced, mut total) = (0u64, 0u64, 0u64);
        for step in 0..self.steps() {
            let Ok(rows) = self.step_rows(order, step) else { break };
            let costs: Vec<u64> = rows.iter().map(|&r| self.row_cost(r, balance)).collect();
            total += costs.iter().sum::<u64>();
            largest_plain += costs.chunks(per_rank).map(|c| c.iter().sum::<u64>()).max().unwrap_or(0);
            let mut loads = vec![0u64; ranks];
            for (at, rank) in self.balanced(&rows, balance).into_iter().enumerate() {
                loads[rank] += costs[at];
            }
            largest_balanced += loads.into_iter().max().unwrap_or(0);
        }
        let mean = total as f64 / ranks as f64;
        if mean == 0.0 {
            return (1.0, 1.0);
        }
        (largest_plain as f64 / mean, largest_balanced as f64 / mean)
    }

    /// A plan of just these step rows (in this order; `None` becomes an empty row), for
    /// materialising one micro-batch.
    pub fn batch_plan(&self, rows: &[StepRow]) -> Plan {
        self.plan.subset(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn options(
        rows_per_batch: usize,
        world_size: usize,
        remainder: Remainder,
        balance: Option<Balance>,
    ) -> ScheduleOptions {
        ScheduleOptions { plan: PlanOptions::new(64), rows_per_batch, world_size, seed: 7, remainder, balance }
    }

    proptest! {
        #[test]
        fn every_row_once_per_epoch_equal_batches_on_every_rank(
            lengths in prop::collection::vec(1u32..64, 1..300),
            rows_per_batch in 1usize..5,
            world in 1usize..5,
            drop in any::<bool>(),
            balance in prop::option::of(prop_oneof![Just(Balance::Tokens), Just(Balance::Attention)]),
            epoch in 0u64..4,
        ) {
            let remainder = if drop { Remainder::Drop } else { Remainder::Pad };
            let schedule = Schedule::new(&lengths, options(rows_per_batch, world, remainder, balance)).unwrap();
            let order = schedule.epoch_order(epoch);
            let mut seen = vec![0usize; schedule.rows()];
            let mut pads = 0;
            for step in 0..schedule.steps() {
                let mut step_set: Vec<StepRow> = Vec::new();
                for rank in 0..world {
                    let rows = schedule.rank_rows(&order, step, rank).unwrap();
                    prop_assert_eq!(rows.len(), rows_per_batch);
                    step_set.extend(&rows);
                }
                // The ranks share out exactly the step's rows.
                let mut expected = schedule.step_rows(&order, step).unwrap();
                expected.sort_unstable();
                step_set.sort_unstable();
                prop_assert_eq!(&step_set, &expected);
                for row in step_set {
                    match row { Some(r) => seen[r as usize] += 1, None => pads += 1 }
                }
            }
            let dropped = seen.iter().filter(|&&n| n == 0).count();
            prop_assert!(seen.iter().all(|&n| n <= 1));
            prop_assert_eq!(dropped, schedule.dropped_rows_per_epoch());
            prop_assert_eq!(pads, schedule.padding_rows_per_epoch());
            if drop { prop_assert!(dropped < schedule.rows_per_step()) } else { prop_assert_eq!(dropped, 0) }
        }

        #[test]
        fn a_step_holds_the_same_rows_for_any_world_size_with_the_same_global_batch(
            lengths in prop::collection::vec(1u32..64, 1..300),
            epoch in 0u64..3,
        ) {
            // Global batch of 8 rows: 8 ranks x 1, 4 x 2, 2 x 4, 1 x 8.
            let schedules: Vec<Schedule> = [(1, 8), (2, 4), (4, 2), (8, 1)]
                .iter()
                .map(|&(per_rank, world)| Schedule::new(&lengths, options(per_rank, world, Remainder::Pad, Some(Balance::Tokens))).unwrap())
                .collect();
            let order = schedules[0].epoch_order(epoch);
            for step in 0..schedules[0].steps() {
                let mut sets = schedules.iter().map(|s| {
                    let mut rows: Vec<StepRow> = (0..s.options.world_size).flat_map(|r| s.rank_rows(&order, step, r).unwrap()).collect();
                    rows.sort_unstable();
                    rows
                });
                let first = sets.next().unwrap();
                for other in sets {
                    prop_assert_eq!(&other, &first);
                }
            }
        }
    }

    #[test]
    fn epochs_differ_and_repeat() {
        let lengths: Vec<u32> = (1..200).map(|n| n % 60 + 1).collect();
        let schedule = Schedule::new(&lengths, options(2, 2, Remainder::Pad, None)).unwrap();
        assert_eq!(schedule.epoch_order(1), schedule.epoch_order(1));
        assert_ne!(schedule.epoch_order(0), schedule.epoch_order(1));
    }

    #[test]
    fn balancing_never_makes_a_step_worse() {
        let lengths: Vec<u32> = (0..500).map(|n| (n * 37) % 63 + 1).collect();
        let schedule = Schedule::new(&lengths, options(3, 4, Remainder::Pad, Some(Balance::Attention))).unwrap();
        let (plain, balanced) = schedule.imbalance(&schedule.epoch_order(0), Balance::Attention);
        assert!(balanced <= plain && balanced >= 1.0, "{plain} {balanced}");
    }

    #[test]
    fn options_are_checked_with_one_message_each() {
        let raw = |rows: Option<i64>, tokens: Option<i64>| RawScheduleOptions {
            plan: PlanOptions::new(64),
            batch_rows: rows,
            batch_tokens: tokens,
            world_size: 1,
            seed: 0,
            remainder: "pad".into(),
            balance: None,
        };
        assert_eq!(ScheduleOptions::try_from(raw(None, Some(200))).unwrap().rows_per_batch, 3);
        let error = ScheduleOptions::try_from(raw(None, Some(10))).unwrap_err().to_string();
        assert!(error.starts_with("option batch_tokens: must be at least max_length (64)"), "{error}");
        let error = ScheduleOptions::try_from(raw(Some(2), Some(200))).unwrap_err().to_string();
        assert!(error.contains("exactly one of batch_rows and batch_tokens"), "{error}");
    }
}
