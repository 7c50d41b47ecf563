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
///
/// 16 bytes: a plan holds one per packed sequence for the whole dataset (a training schedule
/// keeps it for every epoch), so its size is the plan's memory. Sequence counts and lengths
/// are checked to fit `u32` when the plan is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index of the input sequence.
    pub source_index: u32,
    /// Which chunk of that sequence (0 unless it was split or wrapped).
    pub chunk_index: u32,
    /// First token of the piece, as an offset into its sequence.
    pub source_start: u32,
    /// Tokens in the piece.
    pub seq_len: u32,
}

impl Piece {
    /// The input sequence, as an index.
    pub fn source(&self) -> usize {
        self.source_index as usize
    }

    /// First token of the piece, as an offset into its sequence.
    pub fn start(&self) -> usize {
        self.source_start as usize
    }

    /// Tokens in the piece.
    pub fn len(&self) -> usize {
        self.seq_len as usize
    }

    /// Never true for a planned piece; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.seq_len == 0
    }
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
        let real_tokens: u64 = self.pieces.iter().map(|p| u64::from(p.seq_len)).sum();
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
    /// A plan of just these rows (in this order; `None` becomes an empty row), for
    /// materialising one micro-batch of a larger plan.
    pub fn subset(&self, rows: &[Option<u32>]) -> Plan {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut row_offsets = vec![0];
        for &row in rows {
            if let Some(row) = row {
                pieces.extend_from_slice(self.row(row as usize));
            }
            row_offsets.push(pieces.len());
        }
        Plan {
            max_length: self.max_length,
            pieces,
            row_offsets,
            events: Vec::new(),
            input_sequences: self.input_sequences,
            input_tokens: 0,
            padding_rows: rows.iter().filter(|r| r.is_none()).count(),
        }
    }

    pub fn columns(&self) -> PlanColumns {
        let column = |f: fn(&Piece) -> u32| self.pieces.iter().map(|p| i64::from(f(p))).collect();
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

/// Lengths as a caller may hold them (signed integers), checked: none may be negative or
/// longer than `u32::MAX` tokens.
pub fn lengths_from(raw: &[i64]) -> Result<Vec<u32>> {
    raw.iter().enumerate().map(|(index, &length)| checked_length(index, length)).collect()
}

/// One sequence's length as a plan holds it.
pub(crate) fn checked_length(index: usize, length: i64) -> Result<u32> {
    u32::try_from(length).map_err(|_| Error::InvalidOption {
        name: "lengths",
        message: if length < 0 {
            format!("sequence {index} has a negative length ({length})")
        } else {
            format!("sequence {index} has {length} tokens, more than the {} a sequence may hold", u32::MAX)
        },
    })
}

/// Plan rows for sequences of the given lengths.
///
/// Deterministic: the same lengths and options give the same plan. Memory is the plan itself
/// (16 bytes per piece) plus 8 bytes per piece while it is made.
pub fn plan(lengths: &[u32], options: &PlanOptions) -> Result<Plan> {
    options.validate()?;
    if lengths.is_empty() {
        return Err(Error::EmptyInput);
    }
    // One pass for every figure of the lengths the plan needs (it vectorises).
    let (shortest, longest, input_tokens) =
        lengths.iter().fold((u32::MAX, 0u32, 0u64), |(lo, hi, sum), &n| (lo.min(n), hi.max(n), sum + u64::from(n)));
    if shortest == 0 {
        let index = lengths.iter().position(|&n| n == 0).unwrap_or_default();
        return Err(Error::EmptySequence { index });
    }
    if u32::try_from(lengths.len()).is_err() {
        return Err(too_many(lengths.len()));
    }
    let max_length = options.max_length;
    let max_seqs = options.max_seqs_per_row.unwrap_or(usize::MAX);

    let (mut pieces, mut row_offsets, events) = if options.strategy == Strategy::Wrapped {
        wrap(lengths, max_length, max_seqs)?
    } else {
        let (cut, events) =
            if longest as usize > max_length { cut_overlong(lengths, options)? } else { (None, Vec::new()) };
        // Without a cut, piece k is sequence k whole: no piece list is built before placing.
        let piece_lengths: Vec<u32>;
        let placed_lengths = match &cut {
            None => lengths,
            Some(pieces) => {
                piece_lengths = pieces.iter().map(|p| p.seq_len).collect();
                &piece_lengths
            }
        };
        let place = || match options.strategy {
            Strategy::BestFitDecreasing => best_fit_decreasing(placed_lengths, max_length, max_seqs),
            Strategy::FirstFitDecreasing => first_fit_decreasing(placed_lengths, max_length, max_seqs),
            Strategy::Sequential | Strategy::Wrapped => next_fit(placed_lengths, max_length, max_seqs),
        };
        let (placement, output) = place_while_allocating(place, placed_lengths.len());
        let piece_at = |k: u32, length: u32| match &cut {
            None => Piece { source_index: k, chunk_index: 0, source_start: 0, seq_len: length },
            Some(pieces) => pieces[k as usize],
        };
        // Lengths in placement order: from the counting sort's counts when sorted, so no
        // length is gathered through the order.
        let (ordered, offsets) = match &placement.length_counts {
            Some(counts) => group_by_row(&placement, output, sorted_lengths(counts).map(|n| n as u32), piece_at),
            None => {
                group_by_row(&placement, output, placement.order.iter().map(|&k| placed_lengths[k as usize]), piece_at)
            }
        };
        (ordered, offsets, events)
    };

    if let Some(seed) = options.seed {
        (pieces, row_offsets) = shuffle_rows(&pieces, &row_offsets, seed);
    }

    let rows = row_offsets.len() - 1;
    let padded_rows = rows.div_ceil(options.pad_rows_to_multiple_of) * options.pad_rows_to_multiple_of;
    let padding_rows = padded_rows - rows;
    row_offsets.extend(std::iter::repeat_n(pieces.len(), padding_rows));

    Ok(Plan { max_length, pieces, row_offsets, events, input_sequences: lengths.len(), input_tokens, padding_rows })
}

fn too_many(pieces: usize) -> Error {
    Error::InvalidOption {
        name: "lengths",
        message: format!("{pieces} sequences or pieces to pack; a plan holds at most {}", u32::MAX),
    }
}

/// Apply the overlong policy: every sequence becomes zero or more pieces of at most
/// `max_length` tokens, in input order. Called only when some sequence is longer (otherwise,
/// `None`: piece k is sequence k, whole).
fn cut_overlong(lengths: &[u32], options: &PlanOptions) -> Result<(Option<Vec<Piece>>, Vec<Event>)> {
    let max_length = options.max_length;
    let first = lengths.iter().position(|&n| n as usize > max_length).unwrap_or(lengths.len());
    let limit = max_length as u32; // at most MAX_MAX_LENGTH
    let mut pieces = Vec::with_capacity(lengths.len());
    let mut events = Vec::new();
    for (source, &length) in lengths.iter().enumerate() {
        let index = source as u32; // `plan` checked the count fits
        if source < first || length <= limit {
            pieces.push(Piece { source_index: index, chunk_index: 0, source_start: 0, seq_len: length });
            continue;
        }
        let removed = length - limit;
        match options.overlong {
            Overlong::Error => {
                return Err(Error::Overlong { index: source, length: length as usize, max_length });
            }
            Overlong::Drop => events.push(Event {
                source_index: source,
                reason: EventReason::Dropped,
                length: length as usize,
                tokens_removed: length as usize,
                pieces: 0,
            }),
            Overlong::Truncate(keep) => {
                // `Keep::Ends` is refused by `PlanOptions::validate`.
                let start = if keep == Keep::Tail { removed } else { 0 };
                pieces.push(Piece { source_index: index, chunk_index: 0, source_start: start, seq_len: limit });
                events.push(Event {
                    source_index: source,
                    reason: EventReason::Truncated,
                    length: length as usize,
                    tokens_removed: removed as usize,
                    pieces: 1,
                });
            }
            Overlong::Split => {
                let chunks = length.div_ceil(limit);
                for chunk in 0..chunks {
                    let start = chunk * limit;
                    pieces.push(Piece {
                        source_index: index,
                        chunk_index: chunk,
                        source_start: start,
                        seq_len: limit.min(length - start),
                    });
                }
                events.push(Event {
                    source_index: source,
                    reason: EventReason::Split,
                    length: length as usize,
                    tokens_removed: 0,
                    pieces: chunks as usize,
                });
            }
        }
    }
    if u32::try_from(pieces.len()).is_err() {
        return Err(too_many(pieces.len()));
    }
    Ok((Some(pieces), events))
}

/// Piece indices sorted by length, longest first, ties in input order, and how many pieces
/// have each length (`count[n]`). Counting sort, since every length is at most `max_length`:
/// O(N + L), and the placement loops read lengths from the counts, in order, instead of
/// gathering them through the indices.
fn longest_first(lengths: &[u32], max_length: usize) -> (Vec<u32>, Vec<u32>) {
    let mut count = vec![0u32; max_length + 1];
    for &length in lengths {
        count[length as usize] += 1;
    }
    // starts[n]: where the pieces of length n begin in the order (longest first).
    let mut starts = vec![0u32; max_length + 1];
    let mut at = 0u32;
    for length in (1..=max_length).rev() {
        starts[length] = at;
        at += count[length];
    }
    let mut order = vec![0u32; lengths.len()];
    for (index, &length) in lengths.iter().enumerate() {
        let slot = &mut starts[length as usize];
        order[*slot as usize] = index as u32;
        *slot += 1;
    }
    (order, count)
}

/// The lengths of `longest_first`'s order, longest first, from its counts.
fn sorted_lengths(count: &[u32]) -> impl Iterator<Item = usize> + '_ {
    count.iter().enumerate().rev().flat_map(|(length, &n)| std::iter::repeat_n(length, n as usize))
}

/// Pieces in the order they were placed, the row of each (in that same order), and how many
/// pieces each row holds.
struct Placement {
    order: Vec<u32>,
    row_at: Vec<u32>,
    row_counts: Vec<u32>,
    /// When `order` is `longest_first`'s: how many pieces have each length.
    length_counts: Option<Vec<u32>>,
}

/// An open row of best fit, 12 bytes so one cache line serves each placement.
#[derive(Clone, Copy)]
struct OpenRow {
    room: u32,
    count: u32,
    /// 1 + the row under this one in its capacity's stack (0: none).
    below: u32,
}

/// Best-fit decreasing: each piece goes into the open row with the least room that still fits
/// it. Rows with equal room are interchangeable, so which of them is taken does not change the
/// row count; we take the most recently filled, which keeps the choice deterministic.
fn best_fit_decreasing(lengths: &[u32], max_length: usize, max_seqs: usize) -> Placement {
    let (order, count_of_length) = longest_first(lengths, max_length);
    let mut row_at = Vec::with_capacity(lengths.len());
    // Rows with a given remaining capacity form an intrusive stack: `head[c]` is 1 + the last
    // row pushed with capacity c (0: none), linked through `OpenRow::below`.
    let mut head = vec![0u32; max_length + 1];
    let mut rows: Vec<OpenRow> = Vec::new();
    let mut open = CapacitySet::new(max_length + 1);

    for length in sorted_lengths(&count_of_length) {
        let index = if let Some(capacity) = open.next_at_or_after(length) {
            let index = head[capacity] - 1;
            head[capacity] = rows[index as usize].below;
            if head[capacity] == 0 {
                open.remove(capacity);
            }
            index
        } else {
            rows.push(OpenRow { room: max_length as u32, count: 0, below: 0 });
            rows.len() as u32 - 1 // at most one row per piece, and `plan` checked their count
        };
        row_at.push(index);
        let row = &mut rows[index as usize];
        row.room -= length as u32;
        row.count += 1;
        let remaining = row.room as usize;
        if remaining > 0 && (row.count as usize) < max_seqs {
            row.below = head[remaining];
            head[remaining] = index + 1;
            open.insert(remaining);
        }
    }
    let row_counts = rows.iter().map(|r| r.count).collect();
    Placement { order, row_at, row_counts, length_counts: Some(count_of_length) }
}

/// First-fit decreasing: each piece goes into the earliest row with room. A max-segment-tree
/// over rows finds it in O(log N); leaves past the last open row stand for fresh, empty rows.
fn first_fit_decreasing(lengths: &[u32], max_length: usize, max_seqs: usize) -> Placement {
    let (order, count_of_length) = longest_first(lengths, max_length);
    let leaves = lengths.len().next_power_of_two();
    let mut tree = vec![max_length as u32; 2 * leaves];
    let mut count = vec![0u32; leaves];
    let mut row_at = Vec::with_capacity(lengths.len());
    let mut rows = 0;

    for length in sorted_lengths(&count_of_length) {
        let length = length as u32;
        // The root always fits: there are as many leaves as pieces, so a fresh row remains.
        let mut node = 1;
        while node < leaves {
            node = if tree[2 * node] >= length { 2 * node } else { 2 * node + 1 };
        }
        let row = node - leaves;
        rows = rows.max(row + 1);
        row_at.push(row as u32);
        count[row] += 1;
        tree[node] = if (count[row] as usize) < max_seqs { tree[node] - length } else { 0 };
        let mut parent = node / 2;
        while parent >= 1 {
            tree[parent] = tree[2 * parent].max(tree[2 * parent + 1]);
            parent /= 2;
        }
    }
    count.truncate(rows);
    Placement { order, row_at, row_counts: count, length_counts: Some(count_of_length) }
}

/// Next-fit in input order: the current row is closed when the next piece does not fit.
fn next_fit(lengths: &[u32], max_length: usize, max_seqs: usize) -> Placement {
    let mut row_at = Vec::with_capacity(lengths.len());
    let mut rows = 0u32;
    let mut room = 0;
    let mut count = 0;
    for &length in lengths {
        let length = length as usize;
        if rows == 0 || length > room || count == max_seqs {
            rows += 1;
            room = max_length;
            count = 0;
        }
        room -= length;
        count += 1;
        row_at.push(rows - 1);
    }
    let mut row_counts = vec![0u32; rows as usize];
    for &row in &row_at {
        row_counts[row as usize] += 1;
    }
    Placement { order: (0..lengths.len() as u32).collect(), row_at, row_counts, length_counts: None }
}

/// Concatenate all sequences in input order and cut every `max_length` tokens (or after
/// `max_seqs` segments). Returns pieces in row-major order, row offsets and the wrap events.
fn wrap(lengths: &[u32], max_length: usize, max_seqs: usize) -> Result<(Vec<Piece>, Vec<usize>, Vec<Event>)> {
    let mut pieces = Vec::with_capacity(lengths.len());
    let mut row_offsets = vec![0];
    let mut events = Vec::new();
    let limit = max_length as u32; // at most MAX_MAX_LENGTH
    let mut room = limit;
    let mut count = 0;
    for (source, &length) in lengths.iter().enumerate() {
        let mut start = 0;
        let mut chunk = 0;
        while start < length {
            if room == 0 || count == max_seqs {
                row_offsets.push(pieces.len());
                room = limit;
                count = 0;
            }
            let piece_length = room.min(length - start);
            pieces.push(Piece {
                source_index: source as u32, // `plan` checked the count fits
                chunk_index: chunk,
                source_start: start,
                seq_len: piece_length,
            });
            room -= piece_length;
            count += 1;
            start += piece_length;
            chunk += 1;
        }
        if chunk > 1 {
            events.push(Event {
                source_index: source,
                reason: EventReason::Wrapped,
                length: length as usize,
                tokens_removed: 0,
                pieces: chunk as usize,
            });
        }
    }
    if u32::try_from(pieces.len()).is_err() {
        return Err(too_many(pieces.len()));
    }
    row_offsets.push(pieces.len());
    Ok((pieces, row_offsets, events))
}

/// Pieces above which the plan's output is allocated (and its pages faulted in) on a second
/// thread while the first one places pieces: a third of the plan's time at 10M pieces.
const PARALLEL_ALLOCATION: usize = 1 << 20;

const NO_PIECE: Piece = Piece { source_index: 0, chunk_index: 0, source_start: 0, seq_len: 0 };

/// Run the placement and, meanwhile, allocate and touch the `pieces` output it will be grouped
/// into. A plain OS thread, not rayon: a plan is also made in forked `DataLoader` workers,
/// where a rayon pool inherited from the parent would hang.
fn place_while_allocating(place: impl FnOnce() -> Placement + Send, pieces: usize) -> (Placement, Vec<Piece>) {
    let allocate = move || {
        let mut output = Vec::with_capacity(pieces);
        output.resize(pieces, NO_PIECE); // writes every page, unlike a zeroed allocation
        output
    };
    if pieces < PARALLEL_ALLOCATION {
        return (place(), allocate());
    }
    std::thread::scope(|scope| {
        let output = scope.spawn(allocate);
        let placement = place();
        (placement, output.join().unwrap_or_else(|_| vec![NO_PIECE; pieces]))
    })
}

/// Stable counting sort of pieces by row into `ordered` (one slot per piece), keeping
/// placement order inside a row. `piece_at` makes a piece from its index and length; `lengths`
/// are the pieces' in placement order.
fn group_by_row(
    placement: &Placement,
    mut ordered: Vec<Piece>,
    lengths: impl Iterator<Item = u32>,
    piece_at: impl Fn(u32, u32) -> Piece,
) -> (Vec<Piece>, Vec<usize>) {
    let mut row_offsets = Vec::with_capacity(placement.row_counts.len() + 1);
    let mut next = Vec::with_capacity(placement.row_counts.len());
    let mut at = 0usize;
    row_offsets.push(0);
    for &count in &placement.row_counts {
        next.push(at as u32); // fewer pieces than u32::MAX, checked by `plan`
        at += count as usize;
        row_offsets.push(at);
    }
    for ((&piece, &row), length) in placement.order.iter().zip(&placement.row_at).zip(lengths) {
        let slot = &mut next[row as usize];
        ordered[*slot as usize] = piece_at(piece, length);
        *slot += 1;
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
