//! Which sequence goes into which row, decided from lengths alone. The plan is plain data
//! (pieces in row-major order plus row boundaries) so a sampler can use it without tokens, and
//! `layout` can turn it into arrays without deciding anything.

use crate::error::{Error, Result};
use crate::options::{Keep, Overlong};
use crate::pack::capacity::CapacitySet;
use crate::pack::options::{PlanOptions, Strategy};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

/// A contiguous run of one input sequence that becomes one packed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index of the input sequence.
    pub source_index: usize,
    /// Which chunk of that sequence (0 unless it was split or wrapped).
    pub chunk_index: usize,
    /// First token of the piece, as an offset into its sequence.
    pub source_start: usize,
    /// Tokens in the piece.
    pub seq_len: usize,
}

/// Why a sequence is not in the output exactly as it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventReason {
    /// Longer than `max_length` with `overlong="drop"`: none of it is packed.
    Dropped,
    /// Longer than `max_length` with `overlong="truncate"`: `tokens_removed` tokens are gone.
    Truncated,
    /// Longer than `max_length` with `overlong="split"`: packed as `pieces` segments.
    Split,
    /// Cut at a row boundary by the `wrapped` strategy: packed as `pieces` segments.
    Wrapped,
}

impl EventReason {
    /// Stable reason codes shown to users and written to reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dropped => "overlong_dropped",
            Self::Truncated => "overlong_truncated",
            Self::Split => "overlong_split",
            Self::Wrapped => "wrapped_across_rows",
        }
    }
}

/// One sequence the plan did not pack whole and as one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The input sequence.
    pub source_index: usize,
    #[serde(serialize_with = "reason_code")]
    pub reason: EventReason,
    /// The sequence's length as given.
    pub length: usize,
    /// Tokens of it that are in no row.
    pub tokens_removed: usize,
    /// Segments it became (0 when dropped).
    pub pieces: usize,
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's serialize_with passes a reference")]
fn reason_code<S: serde::Serializer>(reason: &EventReason, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(reason.as_str())
}

/// Figures that describe a plan; every one is derived from the plan itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub rows: usize,
    pub max_length: usize,
    pub packed_sequences: usize,
    pub real_tokens: u64,
    pub pad_tokens: u64,
    pub efficiency: f64,
    pub lower_bound_rows: u64,
    pub input_sequences: usize,
    pub input_tokens: u64,
    pub dropped_sequences: usize,
    pub dropped_tokens: u64,
    pub truncated_sequences: usize,
    pub truncated_tokens: u64,
    pub split_sequences: usize,
    pub padding_rows: usize,
}

/// The assignment of every piece to a row and a slot in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub max_length: usize,
    /// Pieces in row-major order: row 0's pieces in slot order, then row 1's, ...
    pub pieces: Vec<Piece>,
    /// Row `r` holds `pieces[row_offsets[r]..row_offsets[r + 1]]`; `len() == rows + 1`.
    pub row_offsets: Vec<usize>,
    /// One entry per sequence that was dropped, truncated, split or wrapped, by source index.
    pub events: Vec<Event>,
    pub input_sequences: usize,
    pub input_tokens: u64,
    /// All-padding rows appended for `pad_rows_to_multiple_of` (they are the last rows).
    pub padding_rows: usize,
}

impl Plan {
    pub fn num_rows(&self) -> usize {
        self.row_offsets.len() - 1
    }

    pub fn row(&self, row: usize) -> &[Piece] {
        &self.pieces[self.row_offsets[row]..self.row_offsets[row + 1]]
    }

    pub fn stats(&self) -> Stats {
        let rows = self.num_rows();
        let real_tokens: u64 = self.pieces.iter().map(|p| p.seq_len as u64).sum();
        let capacity = rows as u64 * self.max_length as u64;
        let count = |reason: EventReason| self.events.iter().filter(move |e| e.reason == reason);
        Stats {
            rows,
            max_length: self.max_length,
            packed_sequences: self.pieces.len(),
            real_tokens,
            pad_tokens: capacity - real_tokens,
            efficiency: if capacity == 0 { 0.0 } else { real_tokens as f64 / capacity as f64 },
            lower_bound_rows: real_tokens.div_ceil(self.max_length as u64),
            input_sequences: self.input_sequences,
            input_tokens: self.input_tokens,
            dropped_sequences: count(EventReason::Dropped).count(),
            dropped_tokens: count(EventReason::Dropped).map(|e| e.tokens_removed as u64).sum(),
            truncated_sequences: count(EventReason::Truncated).count(),
            truncated_tokens: count(EventReason::Truncated).map(|e| e.tokens_removed as u64).sum(),
            split_sequences: count(EventReason::Split).count(),
            padding_rows: self.padding_rows,
        }
    }
}

/// A plan as integer columns, one entry per piece (what samplers and numpy take).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanColumns {
    pub source_index: Vec<i64>,
    pub chunk_index: Vec<i64>,
    pub source_start: Vec<i64>,
    pub seq_lens: Vec<i64>,
    /// The row of every piece.
    pub row: Vec<i64>,
    /// `[rows + 1]`: row `r` holds pieces `row_offsets[r]..row_offsets[r + 1]`.
    pub row_offsets: Vec<i64>,
}

impl Plan {
    pub fn columns(&self) -> PlanColumns {
        let column = |f: fn(&Piece) -> usize| self.pieces.iter().map(|p| f(p) as i64).collect();
        let mut row = Vec::with_capacity(self.pieces.len());
        for (index, pair) in self.row_offsets.windows(2).enumerate() {
            row.extend(std::iter::repeat_n(index as i64, pair[1] - pair[0]));
        }
        PlanColumns {
            source_index: column(|p| p.source_index),
            chunk_index: column(|p| p.chunk_index),
            source_start: column(|p| p.source_start),
            seq_lens: column(|p| p.seq_len),
            row,
            row_offsets: self.row_offsets.iter().map(|&o| o as i64).collect(),
        }
    }
}

/// Lengths as a caller may hold them (signed integers), checked: none may be negative.
pub fn lengths_from(raw: &[i64]) -> Result<Vec<usize>> {
    raw.iter()
        .enumerate()
        .map(|(index, &length)| {
            usize::try_from(length).map_err(|_| Error::InvalidOption {
                name: "lengths",
                message: format!("sequence {index} has a negative length ({length})"),
            })
        })
        .collect()
}

/// Plan rows for sequences of the given lengths.
///
/// Deterministic: the same lengths and options give the same plan.
pub fn plan(lengths: &[usize], options: &PlanOptions) -> Result<Plan> {
    options.validate()?;
    if lengths.is_empty() {
        return Err(Error::EmptyInput);
    }
    if let Some(index) = lengths.iter().position(|&n| n == 0) {
        return Err(Error::EmptySequence { index });
    }
    let max_length = options.max_length;
    let max_seqs = options.max_seqs_per_row.unwrap_or(usize::MAX);

    let (mut pieces, mut row_offsets, events) = if options.strategy == Strategy::Wrapped {
        wrap(lengths, max_length, max_seqs)
    } else {
        let (pieces, events) = cut_overlong(lengths, options)?;
        let piece_lengths: Vec<usize> = pieces.iter().map(|p| p.seq_len).collect();
        let (placement, row_at, rows) = match options.strategy {
            Strategy::BestFitDecreasing => best_fit_decreasing(&piece_lengths, max_length, max_seqs),
            Strategy::FirstFitDecreasing => first_fit_decreasing(&piece_lengths, max_length, max_seqs),
            Strategy::Sequential | Strategy::Wrapped => next_fit(&piece_lengths, max_length, max_seqs),
        };
        let (ordered, offsets) = group_by_row(&pieces, &placement, &row_at, rows);
        (ordered, offsets, events)
    };

    if let Some(seed) = options.seed {
        (pieces, row_offsets) = shuffle_rows(&pieces, &row_offsets, seed);
    }

    let rows = row_offsets.len() - 1;
    let padded_rows = rows.div_ceil(options.pad_rows_to_multiple_of) * options.pad_rows_to_multiple_of;
    let padding_rows = padded_rows - rows;
    row_offsets.extend(std::iter::repeat_n(pieces.len(), padding_rows));

    Ok(Plan {
        max_length,
        pieces,
        row_offsets,
        events,
        input_sequences: lengths.len(),
        input_tokens: lengths.iter().map(|&n| n as u64).sum(),
        padding_rows,
    })
}

/// Apply the overlong policy: every sequence becomes zero or more pieces of at most
/// `max_length` tokens, in input order.
fn cut_overlong(lengths: &[usize], options: &PlanOptions) -> Result<(Vec<Piece>, Vec<Event>)> {
    let max_length = options.max_length;
    let mut pieces = Vec::with_capacity(lengths.len());
    let mut events = Vec::new();
    for (source, &length) in lengths.iter().enumerate() {
        if length <= max_length {
            pieces.push(Piece { source_index: source, chunk_index: 0, source_start: 0, seq_len: length });
            continue;
        }
        let removed = length - max_length;
        match options.overlong {
            Overlong::Error => {
                return Err(Error::Overlong { index: source, length, max_length });
            }
            Overlong::Drop => events.push(Event {
                source_index: source,
                reason: EventReason::Dropped,
                length,
                tokens_removed: length,
                pieces: 0,
            }),
            Overlong::Truncate(keep) => {
                // `Keep::Ends` is refused by `PlanOptions::validate`.
                let start = if keep == Keep::Tail { removed } else { 0 };
                pieces.push(Piece { source_index: source, chunk_index: 0, source_start: start, seq_len: max_length });
                events.push(Event {
                    source_index: source,
                    reason: EventReason::Truncated,
                    length,
                    tokens_removed: removed,
                    pieces: 1,
                });
            }
            Overlong::Split => {
                let chunks = length.div_ceil(max_length);
                for chunk in 0..chunks {
                    let start = chunk * max_length;
                    let piece_length = max_length.min(length - start);
                    pieces.push(Piece {
                        source_index: source,
                        chunk_index: chunk,
                        source_start: start,
                        seq_len: piece_length,
                    });
                }
                events.push(Event {
                    source_index: source,
                    reason: EventReason::Split,
                    length,
                    tokens_removed: 0,
                    pieces: chunks,
                });
            }
        }
    }
    Ok((pieces, events))
}

/// Piece indices sorted by length, longest first, ties in input order, with their lengths.
/// Counting sort, since every length is at most `max_length`: O(N + L). Returning the sorted
/// lengths too keeps the placement loops sequential in memory.
fn longest_first(lengths: &[usize], max_length: usize) -> (Vec<usize>, Vec<usize>) {
    let mut starts = vec![0usize; max_length + 2];
    for &length in lengths {
        starts[max_length - length + 1] += 1;
    }
    for bucket in 1..starts.len() {
        starts[bucket] += starts[bucket - 1];
    }
    let mut order = vec![0usize; lengths.len()];
    for (index, &length) in lengths.iter().enumerate() {
        let slot = &mut starts[max_length - length];
        order[*slot] = index;
        *slot += 1;
    }
    let mut sorted = Vec::with_capacity(lengths.len());
    let mut previous_end = 0;
    for (bucket, &end) in starts.iter().enumerate().take(max_length + 1) {
        sorted.extend(std::iter::repeat_n(max_length - bucket, end - previous_end));
        previous_end = end;
    }
    (order, sorted)
}

/// A placement: pieces in the order they were placed, the row of each (in that same order),
/// and the row count.
type Placement = (Vec<usize>, Vec<usize>, usize);

/// Best-fit decreasing: each piece goes into the open row with the least room that still fits
/// it. Rows with equal room are interchangeable, so which of them is taken does not change the
/// row count; we take the most recently filled, which keeps the choice deterministic.
fn best_fit_decreasing(lengths: &[usize], max_length: usize, max_seqs: usize) -> Placement {
    let (order, sorted) = longest_first(lengths, max_length);
    let mut row_at = Vec::with_capacity(lengths.len());
    // Rows with a given remaining capacity form an intrusive stack: `head[c]` is 1 + the last
    // row pushed with capacity c (0: none), `below[r]` is 1 + the row under r.
    let mut head = vec![0usize; max_length + 1];
    let mut below: Vec<usize> = Vec::new();
    let mut room: Vec<usize> = Vec::new();
    let mut count: Vec<usize> = Vec::new();
    let mut open = CapacitySet::new(max_length + 1);

    for &length in &sorted {
        let row = if let Some(capacity) = open.next_at_or_after(length) {
            let row = head[capacity] - 1;
            head[capacity] = below[row];
            if head[capacity] == 0 {
                open.remove(capacity);
            }
            row
        } else {
            room.push(max_length);
            count.push(0);
            below.push(0);
            room.len() - 1
        };
        row_at.push(row);
        room[row] -= length;
        count[row] += 1;
        let remaining = room[row];
        if remaining > 0 && count[row] < max_seqs {
            below[row] = head[remaining];
            head[remaining] = row + 1;
            open.insert(remaining);
        }
    }
    let rows = room.len();
    (order, row_at, rows)
}

/// First-fit decreasing: each piece goes into the earliest row with room. A max-segment-tree
/// over rows finds it in O(log N); leaves past the last open row stand for fresh, empty rows.
fn first_fit_decreasing(lengths: &[usize], max_length: usize, max_seqs: usize) -> Placement {
    let (order, sorted) = longest_first(lengths, max_length);
    let leaves = lengths.len().next_power_of_two();
    let mut tree = vec![max_length; 2 * leaves];
    let mut count = vec![0usize; leaves];
    let mut row_at = Vec::with_capacity(lengths.len());
    let mut rows = 0;

    for &length in &sorted {
        // The root always fits: there are as many leaves as pieces, so a fresh row remains.
        let mut node = 1;
        while node < leaves {
            node = if tree[2 * node] >= length { 2 * node } else { 2 * node + 1 };
        }
        let row = node - leaves;
        rows = rows.max(row + 1);
        row_at.push(row);
        count[row] += 1;
        tree[node] = if count[row] < max_seqs { tree[node] - length } else { 0 };
        let mut parent = node / 2;
        while parent >= 1 {
            tree[parent] = tree[2 * parent].max(tree[2 * parent + 1]);
            parent /= 2;
        }
    }
    (order, row_at, rows)
}

/// Next-fit in input order: the current row is closed when the next piece does not fit.
fn next_fit(lengths: &[usize], max_length: usize, max_seqs: usize) -> Placement {
    let mut row_of = vec![0usize; lengths.len()];
    let mut rows = 0;
    let mut room = 0;
    let mut count = 0;
    for (piece, &length) in lengths.iter().enumerate() {
        if rows == 0 || length > room || count == max_seqs {
            rows += 1;
            room = max_length;
            count = 0;
        }
        room -= length;
        count += 1;
        row_of[piece] = rows - 1;
    }
    ((0..lengths.len()).collect(), row_of, rows)
}

/// Concatenate all sequences in input order and cut every `max_length` tokens (or after
/// `max_seqs` segments). Returns pieces in row-major order, row offsets and the wrap events.
fn wrap(lengths: &[usize], max_length: usize, max_seqs: usize) -> (Vec<Piece>, Vec<usize>, Vec<Event>) {
    let mut pieces = Vec::with_capacity(lengths.len());
    let mut row_offsets = vec![0];
    let mut events = Vec::new();
    let mut room = max_length;
    let mut count = 0;
    for (source, &length) in lengths.iter().enumerate() {
        let mut start = 0;
        let mut chunk = 0;
        while start < length {
            if room == 0 || count == max_seqs {
                row_offsets.push(pieces.len());
                room = max_length;
                count = 0;
            }
            let piece_length = room.min(length - start);
            pieces.push(Piece { source_index: source, chunk_index: chunk, source_start: start, seq_len: piece_length });
            room -= piece_length;
            count += 1;
            start += piece_length;
            chunk += 1;
        }
        if chunk > 1 {
            events.push(Event {
                source_index: source,
                reason: EventReason::Wrapped,
                length,
                tokens_removed: 0,
                pieces: chunk,
            });
        }
    }
    row_offsets.push(pieces.len());
    (pieces, row_offsets, events)
}

/// Stable counting sort of pieces by row, keeping placement order inside a row.
fn group_by_row(pieces: &[Piece], placement: &[usize], row_at: &[usize], rows: usize) -> (Vec<Piece>, Vec<usize>) {
    let mut row_offsets = vec![0usize; rows + 1];
    for &row in row_at {
        row_offsets[row + 1] += 1;
    }
    for row in 0..rows {
        row_offsets[row + 1] += row_offsets[row];
    }
    let mut next = row_offsets.clone();
    let mut ordered = vec![Piece { source_index: 0, chunk_index: 0, source_start: 0, seq_len: 0 }; pieces.len()];
    for (&piece, &row) in placement.iter().zip(row_at) {
        ordered[next[row]] = pieces[piece];
        next[row] += 1;
    }
    (ordered, row_offsets)
}

/// Reorder whole rows with a seeded `ChaCha8` generator, so the order is the same on every
/// machine. Long rows otherwise come first under the decreasing strategies.
fn shuffle_rows(pieces: &[Piece], row_offsets: &[usize], seed: u64) -> (Vec<Piece>, Vec<usize>) {
    let rows = row_offsets.len() - 1;
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    order.shuffle(&mut rng);
    let mut shuffled = Vec::with_capacity(pieces.len());
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0);
    for row in order {
        shuffled.extend_from_slice(&pieces[row_offsets[row]..row_offsets[row + 1]]);
        offsets.push(shuffled.len());
    }
    (shuffled, offsets)
}
