//! Samples laid end to end: one flat token array, labels and offsets (sample `i` is
//! `tokens[offsets[i]..offsets[i + 1]]`), plus where each sample came from. This is the
//! form packing takes and the one handed to numpy; the copies run in parallel.

use crate::conversation::encode::Sample;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Flattened samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flat {
    pub tokens: Vec<i32>,
    pub labels: Vec<i64>,
    /// `len() == samples + 1`, starting at 0.
    pub offsets: Vec<i64>,
    /// Input record of every sample.
    pub sample_record: Vec<i64>,
    /// Window of its record (0 unless split).
    pub sample_window: Vec<i64>,
}

/// Lay samples end to end. Token ids are stored as int32 (every vocabulary in use fits); an
/// id that does not is refused, naming the sample, rather than wrapped.
pub fn flatten(samples: &[Sample]) -> Result<Flat> {
    let mut offsets = Vec::with_capacity(samples.len() + 1);
    offsets.push(0i64);
    let mut total = 0usize;
    for sample in samples {
        total += sample.tokens.len();
        offsets.push(total as i64);
    }
    let mut tokens = vec![0i32; total];
    let mut labels = vec![0i64; total];
    let mut outs = Vec::with_capacity(samples.len());
    let (mut token_rest, mut label_rest) = (&mut tokens[..], &mut labels[..]);
    for sample in samples {
        let (token_head, token_tail) = std::mem::take(&mut token_rest).split_at_mut(sample.tokens.len());
        let (label_head, label_tail) = std::mem::take(&mut label_rest).split_at_mut(sample.labels.len());
        outs.push((token_head, label_head));
        token_rest = token_tail;
        label_rest = label_tail;
    }
    let first_bad = crate::threads::install(|| {
        outs.into_par_iter()
            .zip(samples)
            .enumerate()
            .with_min_len(64)
            .map(|(index, ((token_out, label_out), sample))| {
                label_out.copy_from_slice(&sample.labels);
                for (position, (cell, &token)) in token_out.iter_mut().zip(&sample.tokens).enumerate() {
                    *cell = i32::try_from(token).map_err(|_| (index, position, token))?;
                }
                Ok(())
            })
            .find_first(std::result::Result::is_err)
    });
    if let Some(Err((index, position, value))) = first_bad {
        return Err(Error::InvalidToken {
            index,
            position,
            value: i64::from(value),
            problem: "above the int32 range of the flat token array",
        });
    }
    Ok(Flat {
        tokens,
        labels,
        offsets,
        sample_record: samples.iter().map(|s| s.record as i64).collect(),
        sample_window: samples.iter().map(|s| s.window as i64).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(record: usize, window: usize, tokens: Vec<u32>) -> Sample {
        let labels = tokens.iter().map(|&t| i64::from(t)).collect();
        Sample { record, window, tokens, labels }
    }

    #[test]
    fn lays_samples_end_to_end() {
        let flat = flatten(&[sample(0, 0, vec![1, 2, 3]), sample(2, 1, vec![4])]).unwrap();
        assert_eq!(flat.tokens, [1, 2, 3, 4]);
        assert_eq!(flat.labels, [1, 2, 3, 4]);
        assert_eq!(flat.offsets, [0, 3, 4]);
        assert_eq!(flat.sample_record, [0, 2]);
        assert_eq!(flat.sample_window, [0, 1]);
        assert_eq!(flatten(&[]).unwrap().offsets, [0]);
    }

    #[test]
    fn an_id_beyond_int32_is_refused_not_wrapped() {
        let error = flatten(&[sample(0, 0, vec![1]), sample(1, 0, vec![5, u32::MAX])]).unwrap_err();
        assert!(matches!(error, Error::InvalidToken { index: 1, position: 1, .. }), "{error}");
    }
}
