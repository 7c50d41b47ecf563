//! Turning a plan into the arrays a trainer consumes. Nothing is decided here: the plan says
//! where every piece goes; this module writes tokens, labels, positions, segments, masks and
//! boundaries, one row per task, so the bytes are identical for any thread count.

use crate::error::{Error, Result};
use crate::labels::IGNORE_INDEX;
use crate::pack::options::{LayoutOptions, LossWeighting};
use crate::pack::plan::{checked_length, Piece, Plan};
use rayon::prelude::*;

/// Below these sizes (a training micro-batch) the work stays on the calling thread: it is too
/// small to gain from threads, and a `DataLoader` worker forked from a process whose rayon
/// pool was already running has no pool threads (they do not survive `fork`), so a job sent
/// to the pool there would wait forever.
const PARALLEL_ROWS: usize = 64;
const PARALLEL_PIECES: usize = 4096;

/// Token ids as they come in (int32 or int64 arrays, a store's uint32).
pub trait TokenIn: Copy + Send + Sync + Into<i64> {
    /// The range of values the type can hold.
    const MIN: i64;
    const MAX: i64;
}
impl TokenIn for i32 {
    const MIN: i64 = i32::MIN as i64;
    const MAX: i64 = i32::MAX as i64;
}
impl TokenIn for i64 {
    const MIN: i64 = i64::MIN;
    const MAX: i64 = i64::MAX;
}
impl TokenIn for u32 {
    const MIN: i64 = 0;
    const MAX: i64 = u32::MAX as i64;
}

/// Token ids as they go out (int64 by default, int32 on request).
pub trait TokenOut: Copy + Send + Sync + Default + TryFrom<i64> {
    const NAME: &'static str;
    const MAX: i64;
}
impl TokenOut for i32 {
    const NAME: &'static str = "int32";
    const MAX: i64 = i32::MAX as i64;
}
impl TokenOut for i64 {
    const NAME: &'static str = "int64";
    const MAX: i64 = i64::MAX;
}

/// Where the labels come from, aligned with the flat tokens.
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    /// Every token is its own label.
    Tokens,
    /// Given per token (`IGNORE_INDEX` = not trained).
    Given(&'a [i64]),
    /// Given per token as int32 (a token store's `labels.i32`).
    Given32(&'a [i32]),
    /// The token itself where the bit is set, `IGNORE_INDEX` elsewhere (a token store's
    /// trained mask: bit `t % 8` of byte `t / 8`).
    Trained(&'a [u8]),
}

impl Labels<'_> {
    /// The label of flat token `at`, whose id is `token`.
    fn at(&self, at: usize, token: i64) -> i64 {
        match self {
            Self::Tokens => token,
            Self::Given(labels) => labels[at],
            Self::Given32(labels) => i64::from(labels[at]),
            Self::Trained(bits) => {
                if bits[at / 8] >> (at % 8) & 1 == 1 {
                    token
                } else {
                    IGNORE_INDEX
                }
            }
        }
    }

    /// How many labels there are, when given per token.
    fn given_len(&self) -> Option<usize> {
        match self {
            Self::Tokens => None,
            Self::Given(labels) => Some(labels.len()),
            Self::Given32(labels) => Some(labels.len()),
            Self::Trained(bits) => Some(bits.len() * 8),
        }
    }
}

/// Flat tokens of all input sequences, `offsets[i]..offsets[i + 1]` being sequence `i`.
#[derive(Debug, Clone, Copy)]
pub struct Sequences<'a, T> {
    pub tokens: &'a [T],
    /// `len() == sequences + 1`, starting at 0, never decreasing, ending at `tokens.len()`
    /// (checked by [`Sequences::new`]; a token store checks it when it is opened).
    pub offsets: &'a [i64],
    pub labels: Labels<'a>,
}

impl<'a, T: TokenIn> Sequences<'a, T> {
    /// Sequences over `tokens`, with the offsets checked.
    pub fn new(tokens: &'a [T], offsets: &'a [i64], labels: Labels<'a>) -> Result<Self> {
        let bad = |message: String| Err(Error::InvalidOffsets { message });
        if offsets.is_empty() {
            return bad("must hold at least one value (0)".into());
        }
        if offsets[0] != 0 {
            return bad(format!("must start at 0, got {}", offsets[0]));
        }
        if let Some(index) = offsets.windows(2).position(|pair| pair[1] < pair[0]) {
            return bad(format!("sequence {index}: offsets decrease ({} then {})", offsets[index], offsets[index + 1]));
        }
        let last = offsets[offsets.len() - 1];
        if last != tokens.len() as i64 {
            return bad(format!("must end at the token count {}, got {last}", tokens.len()));
        }
        if let Some(count) = labels
            .given_len()
            .filter(|&n| n < tokens.len() || (!matches!(labels, Labels::Trained(_)) && n != tokens.len()))
        {
            return Err(Error::InvalidLabels {
                index: 0,
                message: format!("labels hold {count} values in all but the tokens hold {}", tokens.len()),
            });
        }
        Ok(Self { tokens, offsets, labels })
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every sequence's length, checked to fit a plan.
    pub fn lengths(&self) -> Result<Vec<u32>> {
        self.offsets.windows(2).enumerate().map(|(index, w)| checked_length(index, w[1] - w[0])).collect()
    }

    /// Read one token of every cache line the `pieces` hold, and the bytes of a trained
    /// mask under them, before they are written out. The loads do not depend on each other,
    /// so the memory system serves many at once; reading each piece when it is written would
    /// wait for its first lines one piece after another (pieces of a shuffled plan lie far
    /// apart in a store that does not fit the cache).
    fn read_ahead(&self, pieces: &[Piece]) {
        const LINE: usize = 64;
        let stride = (LINE / std::mem::size_of::<T>()).max(1);
        // Every piece's start first: the offsets they come from lie apart too.
        let mut spans: Vec<(usize, usize)> = pieces
            .iter()
            .map(|piece| {
                let start = self.start_of(piece);
                (start, start + piece.len())
            })
            .collect();
        let mut sum = 0_i64;
        // The first line of every piece, then the second of each, and so on: the loads of one
        // round go to as many places as there are pieces, so more of them are in flight.
        while !spans.is_empty() {
            for &(at, _) in &spans {
                sum = sum.wrapping_add(self.tokens[at].into());
                if let Labels::Trained(bits) = self.labels {
                    sum = sum.wrapping_add(i64::from(bits[at / 8]));
                }
            }
            spans.retain_mut(|(at, end)| {
                *at += stride;
                at < end
            });
        }
        std::hint::black_box(sum);
    }

    /// Flat index of the first token of `piece`.
    fn start_of(&self, piece: &Piece) -> usize {
        self.offsets[piece.source()] as usize + piece.start()
    }

    /// Every token a plan writes must be a valid id for the output dtype, every label -100
    /// or an id. The offending sequence with the lowest index is reported, whatever the
    /// thread count; tokens no piece writes (a dropped sequence) are not read.
    pub fn validate<O: TokenOut>(&self, pieces: &[Piece], pad_id: i64) -> Result<()> {
        if O::try_from(pad_id).is_err() || pad_id < 0 {
            return Err(Error::InvalidOption {
                name: "pad_id",
                message: format!("must be a token id >= 0 that fits {}, got {pad_id}", O::NAME),
            });
        }
        // A store's uint32 ids always fit int64 and are never negative, and labels made from
        // the tokens (all of them, or a trained mask) are then valid too: nothing to look at.
        if T::MIN >= 0 && T::MAX <= O::MAX && matches!(self.labels, Labels::Tokens | Labels::Trained(_)) {
            return Ok(());
        }
        let problem = |piece: &Piece| -> Option<Error> {
            let start = self.start_of(piece);
            for k in 0..piece.len() {
                let value: i64 = self.tokens[start + k].into();
                let position = piece.start() + k;
                let index = piece.source();
                if value < 0 {
                    return Some(Error::InvalidToken { index, position, value, problem: "negative" });
                }
                if O::try_from(value).is_err() {
                    let problem = "too large for the int32 output dtype";
                    return Some(Error::InvalidToken { index, position, value, problem });
                }
                let label = self.labels.at(start + k, value);
                if label < 0 && label != IGNORE_INDEX {
                    return Some(Error::InvalidLabels {
                        index,
                        message: format!(
                            "label {label} at position {position} is neither {IGNORE_INDEX} (ignore) nor a token id >= 0"
                        ),
                    });
                }
            }
            None
        };
        let found = |piece: &Piece| problem(piece).map(|e| (piece.source(), piece.start(), e));
        let lowest = |a: &(usize, usize, Error), b: &(usize, usize, Error)| (a.0, a.1).cmp(&(b.0, b.1));
        let worst = if pieces.len() < PARALLEL_PIECES {
            pieces.iter().filter_map(found).min_by(lowest)
        } else {
            crate::threads::install(|| pieces.par_iter().filter_map(found).min_by(lowest))
        };
        worst.map_or(Ok(()), |(_, _, error)| Err(error))
    }
}

/// The packed batch. Row-major `[rows, max_length]` arrays plus per-segment boundaries.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed<O> {
    pub rows: usize,
    pub max_length: usize,
    pub input_ids: Vec<O>,
    pub labels: Vec<i64>,
    pub position_ids: Vec<i64>,
    pub segment_ids: Vec<i32>,
    pub loss_weights: Option<Vec<f32>>,
    /// `[rows + 1]`: row `r` holds segments `row_offsets[r]..row_offsets[r + 1]`.
    pub row_offsets: Vec<i64>,
    /// `[S + 1]` segment boundaries in the padding-free token stream.
    pub cu_seqlens: Vec<i32>,
    pub seq_lens: Vec<i32>,
    /// `[S]`: the input sequence of every segment.
    pub source_index: Vec<i64>,
    /// `[S]`: which chunk of its sequence (0 unless split or wrapped).
    pub chunk_index: Vec<i64>,
    /// `[S]`: offset of the segment's first token inside its input sequence.
    pub source_start: Vec<i64>,
    pub max_seqlen: usize,
}

/// Where output cells go, in order: appended to a vector (a micro-batch or the padding-free
/// stream, each cell written once) or into one row of a zeroed array (the whole dataset, rows
/// filled in parallel).
trait Cells<T: Copy> {
    /// One cell per value.
    fn put(&mut self, values: impl ExactSizeIterator<Item = T>);
    /// `n` cells of `value`.
    fn put_n(&mut self, value: T, n: usize);
    /// The last `n` cells written.
    fn tail(&self, n: usize) -> &[T];
    /// The last `n` cells written, to change.
    fn tail_mut(&mut self, n: usize) -> &mut [T];
}

impl<T: Copy> Cells<T> for Vec<T> {
    fn put(&mut self, values: impl ExactSizeIterator<Item = T>) {
        self.extend(values);
    }

    fn put_n(&mut self, value: T, n: usize) {
        self.resize(self.len() + n, value);
    }

    fn tail(&self, n: usize) -> &[T] {
        &self[self.len() - n..]
    }

    fn tail_mut(&mut self, n: usize) -> &mut [T] {
        let len = self.len();
        &mut self[len - n..]
    }
}

/// One row of an array, written from its start.
struct Cursor<'a, T> {
    cells: &'a mut [T],
    at: usize,
}

impl<'a, T> Cursor<'a, T> {
    fn new(cells: &'a mut [T]) -> Self {
        Self { cells, at: 0 }
    }

    fn next(&mut self, n: usize) -> &mut [T] {
        self.at += n;
        &mut self.cells[self.at - n..self.at]
    }
}

impl<T: Copy> Cells<T> for Cursor<'_, T> {
    fn put(&mut self, values: impl ExactSizeIterator<Item = T>) {
        let n = values.len();
        for (cell, value) in self.next(n).iter_mut().zip(values) {
            *cell = value;
        }
    }

    fn put_n(&mut self, value: T, n: usize) {
        self.next(n).fill(value);
    }

    fn tail(&self, n: usize) -> &[T] {
        &self.cells[self.at - n..self.at]
    }

    fn tail_mut(&mut self, n: usize) -> &mut [T] {
        &mut self.cells[self.at - n..self.at]
    }
}

/// The per-token output arrays of one row (or of the padding-free stream), as cells.
struct Out<A, L, P, S, W> {
    input_ids: A,
    labels: L,
    position_ids: P,
    /// None in the padding-free stream.
    segment_ids: Option<S>,
    loss_weights: Option<W>,
}

impl<A, L, P, S, W> Out<A, L, P, S, W>
where
    L: Cells<i64>,
    P: Cells<i64>,
    S: Cells<i32>,
    W: Cells<f32>,
{
    /// Append `pieces` end to end: tokens, labels (the first of each piece ignored), positions
    /// restarting at 0, segment `slot + 1` and loss weights. The weight of a trained token is
    /// its source's (`weight_of_source`), or 1.
    fn pieces<I: TokenIn, O: TokenOut>(
        &mut self,
        sequences: &Sequences<'_, I>,
        pieces: &[Piece],
        weight_of_source: Option<&[f32]>,
    ) where
        A: Cells<O>,
    {
        for (slot, piece) in pieces.iter().enumerate() {
            let n = piece.len();
            let start = sequences.start_of(piece);
            let tokens = &sequences.tokens[start..start + n];
            // Validated before: every token fits `O`.
            self.input_ids.put(tokens.iter().map(|&token| O::try_from(token.into()).unwrap_or_default()));
            match sequences.labels {
                // A store's trained mask, the common case: the tokens, written once, then -100
                // where the mask is clear (whole turns, mostly).
                Labels::Trained(bits) => {
                    self.labels.put(tokens.iter().map(|&token| token.into()));
                    untrain(bits, start, self.labels.tail_mut(n));
                }
                Labels::Given(given) => self.labels.put(given[start..start + n].iter().copied()),
                other => {
                    self.labels.put(tokens.iter().enumerate().map(|(k, &token)| other.at(start + k, token.into())));
                }
            }
            // The first token of a segment is never a target: predicting it would mean
            // predicting across the boundary from the previous segment's last token.
            self.labels.tail_mut(n)[0] = IGNORE_INDEX;
            self.position_ids.put((0..n).map(|position| position as i64));
            if let Some(segment_ids) = self.segment_ids.as_mut() {
                segment_ids.put_n(slot as i32 + 1, n); // at most MAX_MAX_LENGTH pieces a row
            }
            if let Some(weights) = self.loss_weights.as_mut() {
                let weight = weight_of_source.map_or(1.0, |w| w[piece.source()]);
                weights.put(self.labels.tail(n).iter().map(|&label| if label == IGNORE_INDEX { 0.0 } else { weight }));
            }
        }
    }

    /// `n` cells of padding: its own position run from 0, segment 0, no attention, no loss.
    fn padding<O: TokenOut>(&mut self, n: usize, pad_id: O)
    where
        A: Cells<O>,
    {
        self.input_ids.put_n(pad_id, n);
        self.labels.put_n(IGNORE_INDEX, n);
        self.position_ids.put((0..n).map(|position| position as i64));
        if let Some(segment_ids) = self.segment_ids.as_mut() {
            segment_ids.put_n(0, n);
        }
        if let Some(weights) = self.loss_weights.as_mut() {
            weights.put_n(0.0, n);
        }
    }
}

type Arrays<O> = Out<Vec<O>, Vec<i64>, Vec<i64>, Vec<i32>, Vec<f32>>;

impl<O: TokenOut> Arrays<O> {
    fn with_capacity(cells: usize, segments: bool, weighted: bool) -> Self {
        Out {
            input_ids: Vec::with_capacity(cells),
            labels: Vec::with_capacity(cells),
            position_ids: Vec::with_capacity(cells),
            segment_ids: segments.then(|| Vec::with_capacity(cells)),
            loss_weights: weighted.then(|| Vec::with_capacity(cells)),
        }
    }

    fn zeroed(cells: usize, weighted: bool) -> Self {
        Out {
            input_ids: vec![O::default(); cells],
            labels: vec![0; cells],
            position_ids: vec![0; cells],
            segment_ids: Some(vec![0; cells]),
            loss_weights: weighted.then(|| vec![0.0; cells]),
        }
    }

    /// The arrays cut into rows of `width` cells (none when `width` is 0).
    #[allow(clippy::type_complexity, reason = "one cursor per output array")]
    fn rows(
        &mut self,
        width: usize,
    ) -> Vec<Out<Cursor<'_, O>, Cursor<'_, i64>, Cursor<'_, i64>, Cursor<'_, i32>, Cursor<'_, f32>>> {
        if width == 0 {
            return Vec::new();
        }
        let mut segments = self.segment_ids.as_mut().map(|s| s.chunks_mut(width));
        let mut weights = self.loss_weights.as_mut().map(|w| w.chunks_mut(width));
        self.input_ids
            .chunks_mut(width)
            .zip(self.labels.chunks_mut(width))
            .zip(self.position_ids.chunks_mut(width))
            .map(|((input_ids, labels), position_ids)| Out {
                input_ids: Cursor::new(input_ids),
                labels: Cursor::new(labels),
                position_ids: Cursor::new(position_ids),
                segment_ids: segments.as_mut().and_then(Iterator::next).map(Cursor::new),
                loss_weights: weights.as_mut().and_then(Iterator::next).map(Cursor::new),
            })
            .collect()
    }
}

/// Write every output array for `plan` over `sequences`.
pub fn materialize<I: TokenIn, O: TokenOut>(
    sequences: &Sequences<'_, I>,
    plan: &Plan,
    options: &LayoutOptions,
) -> Result<Packed<O>> {
    let weights = options.loss_weights.map(|weighting| source_weights(sequences, &plan.pieces, weighting));
    materialize_with(sequences, plan, options, weights.as_deref())
}

/// [`materialize`], with the weight of one trained token of each source given (a minibatch
/// of a larger plan: its weights come from the whole plan, not from the rows at hand).
pub fn materialize_with<I: TokenIn, O: TokenOut>(
    sequences: &Sequences<'_, I>,
    plan: &Plan,
    options: &LayoutOptions,
    weight_of_source: Option<&[f32]>,
) -> Result<Packed<O>> {
    sequences.validate::<O>(&plan.pieces, options.pad_id)?;
    let boundaries = segment_boundaries(plan)?;

    let rows = plan.num_rows();
    let width = plan.max_length;
    let weighted = options.loss_weights.is_some();
    let pad_id = O::try_from(options.pad_id).unwrap_or_default();
    let used = |row: usize| plan.row(row).iter().map(Piece::len).sum::<usize>();
    let arrays = if rows < PARALLEL_ROWS {
        // A micro-batch: appended row after row, each cell written once (zeroing the arrays
        // first would double the writes to memory).
        let mut arrays = Arrays::with_capacity(rows * width, true, weighted);
        sequences.read_ahead(&plan.pieces);
        for row in 0..rows {
            arrays.pieces(sequences, plan.row(row), weight_of_source);
            arrays.padding(width - used(row), pad_id);
        }
        arrays
    } else {
        // The whole dataset: zeroed arrays (fresh pages from the kernel), rows in parallel.
        let mut arrays = Arrays::zeroed(rows * width, weighted);
        crate::threads::install(|| {
            arrays.rows(width).into_par_iter().with_min_len(16).enumerate().for_each(|(row, mut out)| {
                out.pieces(sequences, plan.row(row), weight_of_source);
                out.padding(width - used(row), pad_id);
            });
        });
        arrays
    };
    let Out { input_ids, labels, position_ids, segment_ids, loss_weights } = arrays;
    let segment_ids = segment_ids.unwrap_or_default();

    let columns = plan.columns();
    let seq_lens = plan.pieces.iter().map(|p| p.seq_len as i32).collect(); // at most MAX_MAX_LENGTH
    let max_seqlen = plan.pieces.iter().map(Piece::len).max().unwrap_or(0);
    Ok(Packed {
        rows,
        max_length: width,
        input_ids,
        labels,
        position_ids,
        segment_ids,
        loss_weights,
        row_offsets: columns.row_offsets,
        cu_seqlens: boundaries,
        seq_lens,
        source_index: columns.source_index,
        chunk_index: columns.chunk_index,
        source_start: columns.source_start,
        max_seqlen,
    })
}

/// `cu_seqlens`: cumulative segment lengths over the padding-free stream, as int32.
fn segment_boundaries(plan: &Plan) -> Result<Vec<i32>> {
    let total: u64 = plan.pieces.iter().map(|p| u64::from(p.seq_len)).sum();
    let limit = i32::MAX as u64;
    if total > limit {
        return Err(Error::TooManyTokens { tokens: total, limit });
    }
    let mut boundaries = Vec::with_capacity(plan.pieces.len() + 1);
    let mut running = 0i32;
    boundaries.push(0);
    for piece in &plan.pieces {
        running += piece.seq_len as i32; // the total fits, checked above
        boundaries.push(running);
    }
    Ok(boundaries)
}

/// Tokens a piece trains on: every position but the first (which no earlier token of its own
/// sequence predicts) whose label is not ignored.
fn trained_in_piece<I: TokenIn>(sequences: &Sequences<'_, I>, piece: &Piece) -> usize {
    let start = sequences.start_of(piece);
    let n = piece.len();
    // Token ids that cannot be negative are never IGNORE_INDEX: every label made from them
    // (all of them, or a trained mask's) is trained, so the mask's set bits say how many.
    if I::MIN >= 0 {
        match sequences.labels {
            Labels::Tokens => return n.saturating_sub(1),
            Labels::Trained(bits) if n > 1 => return ones(bits, start + 1, start + n),
            _ => {}
        }
    }
    (1..n).filter(|&k| sequences.labels.at(start + k, sequences.tokens[start + k].into()) != IGNORE_INDEX).count()
}

/// The set bits of `bits` (bit `t % 8` of byte `t / 8`) at indices `from..to`.
fn ones(bits: &[u8], from: usize, to: usize) -> usize {
    let bit = |t: usize| usize::from((bits[t >> 3] >> (t & 7)) & 1);
    let (first, last) = (from.div_ceil(8), to / 8); // the whole bytes
    if first >= last {
        return (from..to).map(bit).sum();
    }
    let whole = &bits[first..last];
    let mut words = whole.chunks_exact(8);
    let mut count: usize =
        words.by_ref().map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()).count_ones() as usize).sum();
    count += words.remainder().iter().map(|b| b.count_ones() as usize).sum::<usize>();
    count + (from..first * 8).map(bit).sum::<usize>() + (last * 8..to).map(bit).sum::<usize>()
}

/// Tokens the rows of `pieces` train on (the labels they give that are not ignored).
pub fn trained_tokens<I: TokenIn>(sequences: &Sequences<'_, I>, pieces: &[Piece]) -> usize {
    pieces.iter().map(|piece| trained_in_piece(sequences, piece)).sum()
}

/// The weight of one trained token of each source sequence, from all the pieces of a plan.
pub fn source_weights<I: TokenIn>(
    sequences: &Sequences<'_, I>,
    pieces: &[Piece],
    weighting: LossWeighting,
) -> Vec<f32> {
    match weighting {
        LossWeighting::Token => vec![1.0; sequences.len()],
        LossWeighting::Sequence => {
            let mut trained = vec![0usize; sequences.len()];
            for piece in pieces {
                trained[piece.source()] += trained_in_piece(sequences, piece);
            }
            trained.iter().map(|&n| if n == 0 { 0.0 } else { 1.0 / n as f32 }).collect()
        }
    }
}

/// `IGNORE_INDEX` in `cells` (the labels of the flat tokens from index `start` on) wherever the
/// trained mask's bit is clear. Whole mask bytes go eight cells at a time: all ones (a trained
/// run) leave them, zeros fill them, mixed bytes blend through a table of lane masks; only the
/// unaligned ends go bit by bit.
fn untrain(bits: &[u8], start: usize, cells: &mut [i64]) {
    let clear = |at: usize| (bits[at >> 3] >> (at & 7)) & 1 == 0;
    let head = ((8 - start % 8) % 8).min(cells.len());
    let mut done = head;
    for (group, &byte) in cells[head..].chunks_exact_mut(8).zip(&bits[(start + head) / 8..]) {
        match byte {
            0xff => {}
            0 => group.fill(IGNORE_INDEX),
            _ => {
                // Branch-free: each lane's mask is all ones where trained.
                for (cell, &keep) in group.iter_mut().zip(&KEEP[usize::from(byte)]) {
                    *cell = (*cell & keep) | (IGNORE_INDEX & !keep);
                }
            }
        }
        done += 8;
    }
    for k in (0..head).chain(done..cells.len()) {
        if clear(start + k) {
            cells[k] = IGNORE_INDEX;
        }
    }
}

/// For each mask byte, its eight bits as lanes of all ones (set) or zeros.
static KEEP: [[i64; 8]; 256] = {
    let mut table = [[0_i64; 8]; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut bit = 0;
        while bit < 8 {
            table[byte][bit] = -(((byte >> bit) & 1) as i64);
            bit += 1;
        }
        byte += 1;
    }
    table
};

/// One micro-batch in the padding-free format: the real tokens of a plan's rows end to end.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatBatch<O> {
    pub input_ids: Vec<O>,
    pub labels: Vec<i64>,
    pub position_ids: Vec<i64>,
    pub loss_weights: Option<Vec<f32>>,
    /// `[S + 1]` sequence boundaries.
    pub cu_seqlens: Vec<i32>,
    pub max_seqlen: usize,
}

/// The padding-free form of `plan`: every piece's tokens in row-major order, positions
/// restarting at each, the first label of each ignored. A plan with no piece (only padding
/// rows) gives one untrained padding token, so a step still has something to run.
pub fn materialize_flat<I: TokenIn, O: TokenOut>(
    sequences: &Sequences<'_, I>,
    plan: &Plan,
    options: &LayoutOptions,
    weight_of_source: Option<&[f32]>,
) -> Result<FlatBatch<O>> {
    sequences.validate::<O>(&plan.pieces, options.pad_id)?;
    let cu_seqlens = segment_boundaries(plan)?;
    let total = *cu_seqlens.last().unwrap_or(&0) as usize;
    let pad_id = O::try_from(options.pad_id).unwrap_or_default();
    if total == 0 {
        return Ok(FlatBatch {
            input_ids: vec![pad_id],
            labels: vec![IGNORE_INDEX],
            position_ids: vec![0],
            loss_weights: options.loss_weights.map(|_| vec![0.0]),
            cu_seqlens: vec![0, 1],
            max_seqlen: 1,
        });
    }
    let mut arrays = Arrays::<O>::with_capacity(total, false, options.loss_weights.is_some());
    sequences.read_ahead(&plan.pieces);
    arrays.pieces(sequences, &plan.pieces, weight_of_source);
    let Out { input_ids, labels, position_ids, loss_weights, .. } = arrays;
    let max_seqlen = plan.pieces.iter().map(Piece::len).max().unwrap_or(0);
    Ok(FlatBatch { input_ids, labels, position_ids, loss_weights, cu_seqlens, max_seqlen })
}
