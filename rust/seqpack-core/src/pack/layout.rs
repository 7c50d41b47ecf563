//! Turning a plan into the arrays a trainer consumes. Nothing is decided here: the plan says
//! where every piece goes; this module writes tokens, labels, positions, segments, masks and
//! boundaries, one row per task, so the bytes are identical for any thread count.

use crate::error::{Error, Result};
use crate::labels::IGNORE_INDEX;
use crate::pack::options::{LayoutOptions, LossWeighting};
use crate::pack::plan::{Piece, Plan};
use rayon::prelude::*;

/// Token ids as they come in (int32 or int64).
pub trait TokenIn: Copy + Send + Sync + Into<i64> {}
impl TokenIn for i32 {}
impl TokenIn for i64 {}

/// Token ids as they go out (int64 by default, int32 on request).
pub trait TokenOut: Copy + Send + Sync + Default + TryFrom<i64> {
    const NAME: &'static str;
}
impl TokenOut for i32 {
    const NAME: &'static str = "int32";
}
impl TokenOut for i64 {
    const NAME: &'static str = "int64";
}

/// Flat tokens of all input sequences, `offsets[i]..offsets[i + 1]` being sequence `i`.
#[derive(Debug, Clone, Copy)]
pub struct Sequences<'a, T> {
    pub tokens: &'a [T],
    pub offsets: &'a [usize],
    /// Per-token labels aligned with `tokens` (`IGNORE_INDEX` = not trained), if given.
    pub labels: Option<&'a [i64]>,
}

impl<'a, T: TokenIn> Sequences<'a, T> {
    /// Check offsets against the token array and return them as indices.
    pub fn offsets_from(raw: &[i64], tokens: usize) -> Result<Vec<usize>> {
        let bad = |message: String| Err(Error::InvalidOffsets { message });
        if raw.is_empty() {
            return bad("must hold at least one value (0)".into());
        }
        if raw[0] != 0 {
            return bad(format!("must start at 0, got {}", raw[0]));
        }
        for (index, pair) in raw.windows(2).enumerate() {
            if pair[1] < pair[0] {
                return bad(format!("sequence {index}: offsets decrease ({} then {})", pair[0], pair[1]));
            }
        }
        let last = raw[raw.len() - 1];
        if last != tokens as i64 {
            return bad(format!("must end at the token count {tokens}, got {last}"));
        }
        Ok(raw.iter().map(|&o| o as usize).collect())
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn lengths(&self) -> Vec<usize> {
        self.offsets.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn tokens_of(&self, source: usize) -> &'a [T] {
        &self.tokens[self.offsets[source]..self.offsets[source + 1]]
    }

    fn labels_of(&self, source: usize) -> Option<&'a [i64]> {
        self.labels.map(|l| &l[self.offsets[source]..self.offsets[source + 1]])
    }

    /// Every token must be a valid id for the output dtype, every label -100 or an id.
    /// The first offending sequence (lowest index) is reported, whatever the thread count.
    fn validate<O: TokenOut>(&self, pad_id: i64) -> Result<()> {
        if O::try_from(pad_id).is_err() || pad_id < 0 {
            return Err(Error::InvalidOption {
                name: "pad_id",
                message: format!("must be a token id >= 0 that fits {}, got {pad_id}", O::NAME),
            });
        }
        if let Some(labels) = self.labels {
            if labels.len() != self.tokens.len() {
                return Err(Error::InvalidLabels {
                    index: 0,
                    message: format!(
                        "labels hold {} values in all but the tokens hold {}",
                        labels.len(),
                        self.tokens.len()
                    ),
                });
            }
        }
        let first_bad = (0..self.len()).into_par_iter().find_first(|&source| {
            let token_bad = self.tokens_of(source).iter().any(|&t| {
                let t: i64 = t.into();
                t < 0 || O::try_from(t).is_err()
            });
            let label_bad = self.labels_of(source).is_some_and(|l| l.iter().any(|&v| v < 0 && v != IGNORE_INDEX));
            token_bad || label_bad
        });
        let Some(index) = first_bad else { return Ok(()) };
        for (position, &token) in self.tokens_of(index).iter().enumerate() {
            let value: i64 = token.into();
            if value < 0 {
                return Err(Error::InvalidToken { index, position, value, problem: "negative" });
            }
            if O::try_from(value).is_err() {
                return Err(Error::InvalidToken {
                    index,
                    position,
                    value,
                    problem: "too large for the int32 output dtype",
                });
            }
        }
        let labels = self.labels_of(index).unwrap_or(&[]);
        let (position, value) = labels
            .iter()
            .enumerate()
            .find(|(_, &v)| v < 0 && v != IGNORE_INDEX)
            .map(|(p, &v)| (p, v))
            .expect("find_first reported this sequence");
        Err(Error::InvalidLabels {
            index,
            message: format!(
                "label {value} at position {position} is neither {IGNORE_INDEX} (ignore) nor a token id >= 0"
            ),
        })
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
    sequences.validate::<O>(options.pad_id)?;
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

    let weight_of_source = options.loss_weights.map(|weighting| source_weights(sequences, plan, weighting));
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
        outs.into_par_iter().with_min_len(16).enumerate().for_each(|(row, out)| {
            fill_row(sequences, plan.row(row), out, pad_id, weight_of_source.as_deref());
        });
    }

    let columns = plan.columns();
    let seq_lens = plan.pieces.iter().map(|p| p.seq_len as i32).collect();
    let max_seqlen = plan.pieces.iter().map(|p| p.seq_len).max().unwrap_or(0);
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
    let total: u64 = plan.pieces.iter().map(|p| p.seq_len as u64).sum();
    let limit = i32::MAX as u64;
    if total > limit {
        return Err(Error::TooManyTokens { tokens: total, limit });
    }
    let mut boundaries = Vec::with_capacity(plan.pieces.len() + 1);
    let mut running = 0i32;
    boundaries.push(0);
    for piece in &plan.pieces {
        running += piece.seq_len as i32;
        boundaries.push(running);
    }
    Ok(boundaries)
}

/// Tokens a piece trains on: every position but the first (which no earlier token of its own
/// sequence predicts) whose label is not ignored.
fn trained_in_piece<I: TokenIn>(sequences: &Sequences<'_, I>, piece: &Piece) -> usize {
    match sequences.labels_of(piece.source_index) {
        Some(labels) => labels[piece.source_start + 1..piece.source_start + piece.seq_len]
            .iter()
            .filter(|&&l| l != IGNORE_INDEX)
            .count(),
        None => piece.seq_len - 1,
    }
}

/// The weight of one trained token of each source sequence.
fn source_weights<I: TokenIn>(sequences: &Sequences<'_, I>, plan: &Plan, weighting: LossWeighting) -> Vec<f32> {
    match weighting {
        LossWeighting::Token => vec![1.0; sequences.len()],
        LossWeighting::Sequence => {
            let mut trained = vec![0usize; sequences.len()];
            for piece in &plan.pieces {
                trained[piece.source_index] += trained_in_piece(sequences, piece);
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
        let span = at..at + piece.seq_len;
        let tokens = &sequences.tokens_of(piece.source_index)[piece.source_start..piece.source_start + piece.seq_len];
        for (cell, &token) in input_ids[span.clone()].iter_mut().zip(tokens) {
            // Validated above: every token fits `O`.
            *cell = O::try_from(token.into()).unwrap_or_default();
        }
        let row_labels = &mut labels[span.clone()];
        match sequences.labels_of(piece.source_index) {
            Some(given) => row_labels.copy_from_slice(&given[piece.source_start..piece.source_start + piece.seq_len]),
            None => {
                for (cell, &token) in row_labels.iter_mut().zip(tokens) {
                    *cell = token.into();
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
            let weight = per_source[piece.source_index];
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
