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

    /// Flat index of the first token of `piece`.
    fn start_of(&self, piece: &Piece) -> usize {
        self.offsets[piece.source()] as usize + piece.start()
    }

    /// Every token a plan writes must be a valid id for the output dtype, every label -100
    /// or an id. The offending sequence with the lowest index is reported, whatever the
    /// thread count; tokens no piece writes (a dropped sequence) are not read.
    fn validate<O: TokenOut>(&self, pieces: &[Piece], pad_id: i64) -> Result<()> {
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
            pieces.par_iter().filter_map(found).min_by(lowest)
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

/// One row's slices of every output array.
struct RowOut<'a, O> {
    input_ids: &'a mut [O],
    labels: &'a mut [i64],
    position_ids: &'a mut [i64],
    segment_ids: &'a mut [i32],
    loss_weights: Option<&'a mut [f32]>,
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
    let cells = rows * width;
    // `vec![0; n]` is a calloc: the kernel hands out zeroed pages on first touch, so each cell
    // is written exactly once, by the row task below.
    let mut input_ids = vec![O::default(); cells];
    let mut labels = vec![0i64; cells];
    let mut position_ids = vec![0i64; cells];
    let mut segment_ids = vec![0i32; cells];
    let mut loss_weights = options.loss_weights.map(|_| vec![0f32; cells]);
    let weight_of_source = weight_of_source.filter(|_| loss_weights.is_some());
    let pad_id = O::try_from(options.pad_id).unwrap_or_default();

    if width > 0 {
        let mut weight_chunks: Vec<Option<&mut [f32]>> = match loss_weights.as_mut() {
            Some(w) => w.chunks_mut(width).map(Some).collect(),
            None => (0..rows).map(|_| None).collect(),
        };
        let outs: Vec<RowOut<'_, O>> = input_ids
            .chunks_mut(width)
            .zip(labels.chunks_mut(width))
            .zip(position_ids.chunks_mut(width))
            .zip(segment_ids.chunks_mut(width))
            .zip(weight_chunks.drain(..))
            .map(|((((input_ids, labels), position_ids), segment_ids), loss_weights)| RowOut {
                input_ids,
                labels,
                position_ids,
                segment_ids,
                loss_weights,
            })
            .collect();
        let fill =
            |(row, out): (usize, RowOut<'_, O>)| fill_row(sequences, plan.row(row), out, pad_id, weight_of_source);
        if rows < PARALLEL_ROWS {
            outs.into_iter().enumerate().for_each(fill);
        } else {
            outs.into_par_iter().with_min_len(16).enumerate().for_each(fill);
        }
    }

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
    (1..piece.len())
        .filter(|&k| sequences.labels.at(start + k, sequences.tokens[start + k].into()) != IGNORE_INDEX)
        .count()
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

fn fill_row<I: TokenIn, O: TokenOut>(
    sequences: &Sequences<'_, I>,
    pieces: &[Piece],
    out: RowOut<'_, O>,
    pad_id: O,
    weight_of_source: Option<&[f32]>,
) {
    let RowOut { input_ids, labels, position_ids, segment_ids, mut loss_weights } = out;
    let mut at = 0;
    for (slot, piece) in pieces.iter().enumerate() {
        let span = at..at + piece.len();
        let start = sequences.start_of(piece);
        let tokens = &sequences.tokens[start..start + piece.len()];
        for (cell, &token) in input_ids[span.clone()].iter_mut().zip(tokens) {
            // Validated above: every token fits `O`.
            *cell = O::try_from(token.into()).unwrap_or_default();
        }
        let row_labels = &mut labels[span.clone()];
        match sequences.labels {
            Labels::Given(given) => row_labels.copy_from_slice(&given[start..start + piece.len()]),
            // A store's trained mask, the common case: one loop without a match per token.
            Labels::Trained(bits) => {
                for (k, (cell, &token)) in row_labels.iter_mut().zip(tokens).enumerate() {
                    let at = start + k;
                    *cell = if (bits[at >> 3] >> (at & 7)) & 1 == 1 { token.into() } else { IGNORE_INDEX };
                }
            }
            other => {
                for (k, (cell, &token)) in row_labels.iter_mut().zip(tokens).enumerate() {
                    *cell = other.at(start + k, token.into());
                }
            }
        }
        // The first token of a segment is never a target: predicting it would mean predicting
        // across the boundary from the previous segment's last token.
        row_labels[0] = IGNORE_INDEX;
        for (position, cell) in position_ids[span.clone()].iter_mut().enumerate() {
            *cell = position as i64;
        }
        segment_ids[span.clone()].fill(slot as i32 + 1);
        if let (Some(weights), Some(per_source)) = (loss_weights.as_deref_mut(), weight_of_source) {
            let weight = per_source[piece.source()];
            for (cell, &label) in weights[span.clone()].iter_mut().zip(row_labels.iter()) {
                *cell = if label == IGNORE_INDEX { 0.0 } else { weight };
            }
        }
        at = span.end;
    }
    // Padding: its own position run from 0, segment 0, no attention, no loss.
    input_ids[at..].fill(pad_id);
    labels[at..].fill(IGNORE_INDEX);
    for (position, cell) in position_ids[at..].iter_mut().enumerate() {
        *cell = position as i64;
    }
    // segment_ids and loss_weights are already 0 there.
}

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
    let mut input_ids = Vec::with_capacity(total);
    let mut labels = Vec::with_capacity(total);
    let mut position_ids = Vec::with_capacity(total);
    let mut loss_weights = options.loss_weights.map(|_| Vec::with_capacity(total));
    for piece in &plan.pieces {
        let start = sequences.start_of(piece);
        let tokens = &sequences.tokens[start..start + piece.len()];
        // Validated above: every token fits `O`.
        input_ids.extend(tokens.iter().map(|&token| O::try_from(token.into()).unwrap_or_default()));
        let first = labels.len();
        match sequences.labels {
            Labels::Given(given) => labels.extend_from_slice(&given[start..start + piece.len()]),
            other => labels.extend(tokens.iter().enumerate().map(|(k, &token)| other.at(start + k, token.into()))),
        }
        // The first token of a sequence is never a target.
        labels[first] = IGNORE_INDEX;
        position_ids.extend(0..piece.len() as i64);
        if let Some(weights) = loss_weights.as_mut() {
            let weight = weight_of_source.map_or(1.0, |w| w[piece.source()]);
            weights.extend(labels[first..].iter().map(|&label| if label == IGNORE_INDEX { 0.0 } else { weight }));
        }
    }
    let max_seqlen = plan.pieces.iter().map(Piece::len).max().unwrap_or(0);
    Ok(FlatBatch { input_ids, labels, position_ids, loss_weights, cu_seqlens, max_seqlen })
}
