//! Invariants a user relies on, over random lengths and options.

use proptest::prelude::*;
use seqpack_core::pack::Strategy as PackStrategy;
use seqpack_core::pack::{
    materialize, materialize_flat, materialize_with, plan, source_weights, trained_tokens, Keep, Labels, LayoutOptions,
    LossWeighting, Overlong, Packed, Piece, Plan, PlanOptions, Sequences,
};
use seqpack_core::{Error, IGNORE_INDEX};

fn strategy() -> impl Strategy<Value = PackStrategy> {
    prop_oneof![
        Just(PackStrategy::BestFitDecreasing),
        Just(PackStrategy::FirstFitDecreasing),
        Just(PackStrategy::Sequential),
        Just(PackStrategy::Wrapped),
    ]
}

fn overlong() -> impl Strategy<Value = Overlong> {
    prop_oneof![
        Just(Overlong::Drop),
        Just(Overlong::Truncate(Keep::Head)),
        Just(Overlong::Truncate(Keep::Tail)),
        Just(Overlong::Split),
    ]
}

fn options() -> impl Strategy<Value = PlanOptions> {
    (1usize..300, strategy(), prop::option::of(1usize..6), overlong(), 1usize..5, prop::option::of(any::<u64>()))
        .prop_map(|(max_length, strategy, max_seqs_per_row, overlong, multiple, seed)| PlanOptions {
            max_length,
            strategy,
            max_seqs_per_row,
            overlong,
            pad_rows_to_multiple_of: multiple,
            seed,
        })
}

/// Naive best fit: scan every row for the tightest fit. The reference for the fast one.
fn naive_best_fit_rows(lengths: &[usize], max_length: usize, max_seqs: usize) -> usize {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut rows: Vec<(usize, usize)> = Vec::new();
    for i in order {
        let length = lengths[i];
        let best = rows
            .iter()
            .enumerate()
            .filter(|(_, &(room, count))| room >= length && count < max_seqs)
            .min_by_key(|(_, &(room, _))| room)
            .map(|(r, _)| r);
        match best {
            Some(r) => {
                rows[r].0 -= length;
                rows[r].1 += 1;
            }
            None => rows.push((max_length - length, 1)),
        }
    }
    rows.len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_token_is_packed_once_or_reported(lengths in prop::collection::vec(1u32..700, 1..120), options in options()) {
        let plan = plan(&lengths, &options).unwrap();
        let stats = plan.stats();
        // Rows never overflow, and the segment limit holds.
        for row in 0..plan.num_rows() {
            let pieces = plan.row(row);
            prop_assert!(pieces.iter().map(Piece::len).sum::<usize>() <= options.max_length);
            if let Some(limit) = options.max_seqs_per_row { prop_assert!(pieces.len() <= limit); }
        }
        prop_assert!(stats.rows as u64 >= stats.lower_bound_rows);
        prop_assert_eq!(stats.rows % options.pad_rows_to_multiple_of, 0);
        // Per source: pieces are disjoint, in order, and together with the report cover it.
        let mut by_source: Vec<Vec<Piece>> = vec![Vec::new(); lengths.len()];
        for piece in &plan.pieces { by_source[piece.source()].push(*piece); }
        for (source, pieces) in by_source.iter_mut().enumerate() {
            pieces.sort_by_key(|p| p.chunk_index);
            let packed: usize = pieces.iter().map(Piece::len).sum();
            let removed: usize = plan.events.iter().filter(|e| e.source_index == source).map(|e| e.tokens_removed).sum();
            prop_assert_eq!(packed + removed, lengths[source] as usize, "source {}", source);
            for (chunk, piece) in pieces.iter().enumerate() {
                prop_assert_eq!(piece.chunk_index as usize, chunk);
                prop_assert!(piece.seq_len >= 1 && piece.source_start + piece.seq_len <= lengths[source]);
            }
            for pair in pieces.windows(2) {
                prop_assert_eq!(pair[0].source_start + pair[0].seq_len, pair[1].source_start);
            }
        }
        prop_assert_eq!(stats.real_tokens + stats.dropped_tokens + stats.truncated_tokens, stats.input_tokens);
    }

    #[test]
    fn best_fit_matches_the_naive_reference(lengths in prop::collection::vec(1u32..200, 1..150), max_length in 200usize..400) {
        // Without a segment limit rows of equal room are interchangeable, so any best fit gives
        // the same row count. (With a limit, ties between rows of equal room but different
        // segment counts make equally valid best fits differ.)
        let plan = plan(&lengths, &PlanOptions::new(max_length)).unwrap();
        let as_usize: Vec<usize> = lengths.iter().map(|&n| n as usize).collect();
        prop_assert_eq!(plan.num_rows(), naive_best_fit_rows(&as_usize, max_length, usize::MAX));
    }

    #[test]
    fn sequential_and_wrapped_keep_input_order(lengths in prop::collection::vec(1u32..500, 1..80), max_length in 1usize..300, wrapped in any::<bool>()) {
        let mut options = PlanOptions::new(max_length);
        options.strategy = if wrapped { PackStrategy::Wrapped } else { PackStrategy::Sequential };
        options.overlong = Overlong::Split;
        let plan = plan(&lengths, &options).unwrap();
        let order: Vec<(u32, u32)> = plan.pieces.iter().map(|p| (p.source_index, p.chunk_index)).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        prop_assert_eq!(order, sorted);
        if wrapped {
            // Every row but the last is full.
            for row in 0..plan.num_rows().saturating_sub(1) {
                prop_assert_eq!(plan.row(row).iter().map(Piece::len).sum::<usize>(), max_length);
            }
        }
    }

    #[test]
    fn layout_agrees_with_the_plan(lengths in prop::collection::vec(1u32..90, 1..40), options in options(), with_labels in any::<bool>(), weighting in prop::option::of(prop_oneof![Just(LossWeighting::Token), Just(LossWeighting::Sequence)])) {
        let total: usize = lengths.iter().map(|&n| n as usize).sum();
        let tokens: Vec<i64> = (0..total as i64).map(|t| t * 7 + 3).collect();
        let labels: Vec<i64> = tokens.iter().map(|&t| if t % 3 == 0 { IGNORE_INDEX } else { t }).collect();
        let mut offsets = vec![0i64];
        for &n in &lengths { offsets.push(offsets.last().unwrap() + i64::from(n)); }
        let sequences = Sequences::new(&tokens, &offsets, if with_labels { Labels::Given(&labels) } else { Labels::Tokens }).unwrap();
        let plan = plan(&lengths, &options).unwrap();
        let layout = LayoutOptions { pad_id: 5, loss_weights: weighting, ..LayoutOptions::default() };
        let packed: Packed<i64> = materialize(&sequences, &plan, &layout).unwrap();
        let width = options.max_length;
        prop_assert_eq!(packed.input_ids.len(), plan.num_rows() * width);
        let mut segment = 0;
        prop_assert_eq!(packed.row_offsets.len(), plan.num_rows() + 1);
        for row in 0..plan.num_rows() {
            prop_assert_eq!(packed.row_offsets[row + 1] - packed.row_offsets[row], plan.row(row).len() as i64);
            let mut at = row * width;
            for (slot, piece) in plan.row(row).iter().enumerate() {
                let begin = offsets[piece.source()] as usize + piece.start();
                for k in 0..piece.len() {
                    prop_assert_eq!(packed.input_ids[at + k], tokens[begin + k]);
                    prop_assert_eq!(packed.position_ids[at + k], k as i64);
                    prop_assert_eq!(packed.segment_ids[at + k], slot as i32 + 1);
                    let expected = if k == 0 { IGNORE_INDEX } else if with_labels { labels[begin + k] } else { tokens[begin + k] };
                    prop_assert_eq!(packed.labels[at + k], expected);
                }
                prop_assert_eq!(packed.cu_seqlens[segment + 1] - packed.cu_seqlens[segment], piece.seq_len as i32);
                prop_assert_eq!(packed.seq_lens[segment], piece.seq_len as i32);
                prop_assert_eq!(packed.source_index[segment], i64::from(piece.source_index));
                prop_assert_eq!(packed.chunk_index[segment], i64::from(piece.chunk_index));
                prop_assert_eq!(packed.source_start[segment], i64::from(piece.source_start));
                segment += 1;
                at += piece.len();
            }
            for cell in at..(row + 1) * width {
                prop_assert_eq!(packed.input_ids[cell], 5);
                prop_assert_eq!(packed.labels[cell], IGNORE_INDEX);
                prop_assert_eq!(packed.segment_ids[cell], 0);
            }
        }
        if let Some(weights) = &packed.loss_weights {
            for (cell, &w) in weights.iter().enumerate() {
                prop_assert_eq!(w == 0.0, packed.labels[cell] == IGNORE_INDEX);
            }
            if weighting == Some(LossWeighting::Sequence) {
                let mut sums = vec![0f64; lengths.len()];
                for segment in 0..packed.seq_lens.len() {
                    let source = packed.source_index[segment] as usize;
                    let (row, start) = locate(&packed, segment);
                    for k in 0..packed.seq_lens[segment] as usize { sums[source] += f64::from(weights[row * width + start + k]); }
                }
                for sum in sums { prop_assert!(sum == 0.0 || (sum - 1.0).abs() < 1e-4, "sum {}", sum); }
            }
        }
    }

    #[test]
    fn a_trained_mask_labels_as_the_labels_it_stands_for(lengths in prop::collection::vec(1u32..70, 1..40), runs in prop::collection::vec((any::<bool>(), 1usize..40), 70..2800), max_length in 70usize..200) {
        // Pieces start at every bit offset of the mask's bytes, so the byte-wise loop's
        // unaligned head and tail are both exercised; runs of either kind (whole turns, as in
        // chat data) give whole bytes of ones and of zeros, mixed bytes where they meet.
        let trained: Vec<bool> = runs.iter().flat_map(|&(on, n)| std::iter::repeat_n(on, n)).chain(std::iter::repeat(false)).take(2800).collect();
        let total: usize = lengths.iter().map(|&n| n as usize).sum();
        let tokens: Vec<u32> = (0..total as u32).map(|t| t * 5 + 1).collect();
        let mut bits = vec![0u8; total.div_ceil(8)];
        for (at, _) in trained.iter().take(total).enumerate().filter(|(_, &on)| on) { bits[at / 8] |= 1 << (at % 8); }
        let labels: Vec<i64> = (0..total).map(|at| if trained[at] { i64::from(tokens[at]) } else { IGNORE_INDEX }).collect();
        let mut offsets = vec![0i64];
        for &n in &lengths { offsets.push(offsets.last().unwrap() + i64::from(n)); }
        let masked = Sequences::new(&tokens, &offsets, Labels::Trained(&bits)).unwrap();
        let given = Sequences::new(&tokens, &offsets, Labels::Given(&labels)).unwrap();
        let plan = plan(&lengths, &PlanOptions::new(max_length)).unwrap();
        let layout = LayoutOptions::default();
        prop_assert_eq!(materialize::<u32, i64>(&masked, &plan, &layout).unwrap(), materialize::<u32, i64>(&given, &plan, &layout).unwrap());
        prop_assert_eq!(
            materialize_flat::<u32, i64>(&masked, &plan, &layout, None).unwrap(),
            materialize_flat::<u32, i64>(&given, &plan, &layout, None).unwrap()
        );
        // What `num_items_in_batch` counts, from the mask's bits, the labels given and the
        // rows written alike.
        let written = materialize::<u32, i64>(&masked, &plan, &layout).unwrap().labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
        prop_assert_eq!(trained_tokens(&masked, &plan.pieces), written);
        prop_assert_eq!(trained_tokens(&given, &plan.pieces), written);
    }

    #[test]
    fn a_micro_batch_is_the_same_cells_as_its_rows_in_the_whole_dataset(lengths in prop::collection::vec(1u32..60, 300..400), weighting in prop::option::of(prop_oneof![Just(LossWeighting::Token), Just(LossWeighting::Sequence)]), cut in 1usize..63) {
        // The whole dataset is written in parallel into zeroed arrays; a micro-batch (under 64
        // rows) is appended row after row. Both must give the same cells.
        let total: usize = lengths.iter().map(|&n| n as usize).sum();
        let tokens: Vec<u32> = (0..total as u32).map(|t| t * 3 + 2).collect();
        let bits: Vec<u8> = (0..total.div_ceil(8)).map(|b| (b * 37 % 256) as u8).collect();
        let mut offsets = vec![0i64];
        for &n in &lengths { offsets.push(offsets.last().unwrap() + i64::from(n)); }
        let sequences = Sequences::new(&tokens, &offsets, Labels::Trained(&bits)).unwrap();
        let whole = plan(&lengths, &PlanOptions::new(128)).unwrap();
        prop_assert!(whole.num_rows() >= 64);
        let layout = LayoutOptions { pad_id: 9, loss_weights: weighting, ..LayoutOptions::default() };
        // As the loader passes them: per-source weights only for sequence weighting.
        let weights = weighting.filter(|&w| w == LossWeighting::Sequence).map(|w| source_weights(&sequences, &whole.pieces, w));
        let all: Packed<i64> = materialize_with(&sequences, &whole, &layout, weights.as_deref()).unwrap();
        let width = whole.max_length;
        let mut first = 0;
        while first < whole.num_rows() {
            let last = (first + cut).min(whole.num_rows());
            let (from, to) = (whole.row_offsets[first], whole.row_offsets[last]);
            let batch = Plan {
                pieces: whole.pieces[from..to].to_vec(),
                row_offsets: whole.row_offsets[first..=last].iter().map(|&o| o - from).collect(),
                events: Vec::new(),
                ..whole.clone()
            };
            let part: Packed<i64> = materialize_with(&sequences, &batch, &layout, weights.as_deref()).unwrap();
            let cells = first * width..last * width;
            prop_assert_eq!(&part.input_ids[..], &all.input_ids[cells.clone()]);
            prop_assert_eq!(&part.labels[..], &all.labels[cells.clone()]);
            prop_assert_eq!(&part.position_ids[..], &all.position_ids[cells.clone()]);
            prop_assert_eq!(&part.segment_ids[..], &all.segment_ids[cells.clone()]);
            prop_assert_eq!(part.loss_weights.as_deref(), all.loss_weights.as_ref().map(|w| &w[cells.clone()]));
            first = last;
        }
        if let Some(weights) = &all.loss_weights {
            for (cell, &w) in weights.iter().enumerate() {
                prop_assert_eq!(w == 0.0, all.labels[cell] == IGNORE_INDEX);
            }
        }
    }

    #[test]
    fn same_bytes_for_any_thread_count(lengths in prop::collection::vec(1u32..300, 1..200), seed in any::<u64>()) {
        let total: usize = lengths.iter().map(|&n| n as usize).sum();
        let tokens: Vec<i32> = (0..total as i32).collect();
        let mut offsets = vec![0i64];
        for &n in &lengths { offsets.push(offsets.last().unwrap() + i64::from(n)); }
        let sequences = Sequences::new(&tokens, &offsets, Labels::Tokens).unwrap();
        let mut options = PlanOptions::new(512);
        options.seed = Some(seed);
        let layout = LayoutOptions { loss_weights: Some(LossWeighting::Sequence), ..LayoutOptions::default() };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let plan = plan(&lengths, &options).unwrap();
                materialize::<i32, i64>(&sequences, &plan, &layout).unwrap()
            })
        };
        prop_assert_eq!(run(1), run(4));
    }
}

/// (row, column) of a segment's first token, from the segment ids.
fn locate(packed: &Packed<i64>, segment: usize) -> (usize, usize) {
    let width = packed.max_length;
    let mut seen = 0;
    for row in 0..packed.rows {
        let count = packed.segment_ids[row * width..(row + 1) * width].iter().copied().max().unwrap_or(0) as usize;
        if segment < seen + count {
            let slot = (segment - seen + 1) as i32;
            let column = packed.segment_ids[row * width..(row + 1) * width].iter().position(|&s| s == slot).unwrap();
            return (row, column);
        }
        seen += count;
    }
    unreachable!("segment {segment} not found")
}

#[test]
fn errors_name_the_sequence() {
    let options = PlanOptions::new(10);
    assert_eq!(plan(&[], &options), Err(Error::EmptyInput));
    assert_eq!(plan(&[3, 0], &options), Err(Error::EmptySequence { index: 1 }));
    let error = plan(&[3, 11], &options).unwrap_err();
    assert_eq!(error, Error::Overlong { index: 1, length: 11, max_length: 10 });
    assert!(error.to_string().contains("sequence 1 has 11 tokens"));
    assert!(matches!(plan(&[3], &PlanOptions::new(0)), Err(Error::InvalidOption { name: "max_length", .. })));
    assert!(matches!("best".parse::<PackStrategy>(), Err(Error::InvalidOption { name: "strategy", .. })));

    let tokens = [1i64, 2, -4];
    let offsets = [0i64, 2, 3];
    let sequences = Sequences::new(&tokens, &offsets, Labels::Tokens).unwrap();
    let plan = plan(&[2, 1], &options).unwrap();
    let layout = LayoutOptions::default();
    let error = materialize::<i64, i64>(&sequences, &plan, &layout).unwrap_err();
    assert_eq!(error, Error::InvalidToken { index: 1, position: 0, value: -4, problem: "negative" });

    let big = [1i64, 2, 1 << 40];
    let sequences = Sequences::new(&big, &offsets, Labels::Tokens).unwrap();
    assert!(matches!(materialize::<i64, i32>(&sequences, &plan, &layout), Err(Error::InvalidToken { index: 1, .. })));

    let tokens = [1i64, 2, 3];
    let labels = [1i64, -7, 3];
    let sequences = Sequences::new(&tokens, &offsets, Labels::Given(&labels)).unwrap();
    let error = materialize::<i64, i64>(&sequences, &plan, &layout).unwrap_err();
    assert!(error.to_string().contains("sequence 0: label -7 at position 1"), "{error}");

    assert!(Sequences::new(&[1i64, 2], &[0, 3, 2], Labels::Tokens).unwrap_err().to_string().contains("sequence 1"));
}

#[test]
fn best_fit_packs_a_known_case_tightly() {
    // 6+4, 5+5, 7+3 fill three rows of 10 exactly; next-fit needs more.
    let lengths = [6, 5, 7, 4, 5, 3];
    let bfd = plan(&lengths, &PlanOptions::new(10)).unwrap();
    assert_eq!(bfd.num_rows(), 3);
    assert!((bfd.stats().efficiency - 1.0).abs() < f64::EPSILON);
    let mut options = PlanOptions::new(10);
    options.strategy = PackStrategy::Sequential;
    assert_eq!(plan(&lengths, &options).unwrap().num_rows(), 5);
}

#[test]
fn a_plan_large_enough_to_allocate_on_a_second_thread_is_still_whole() {
    // Above a million pieces the output is allocated while pieces are placed; every sequence
    // must still be packed once, rows within max_length, in the same order as a sequential
    // plan of the same rows would have them.
    let lengths: Vec<u32> = (0..1_100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 20) % 500 + 1).collect();
    let plan = plan(&lengths, &PlanOptions::new(1024)).unwrap();
    let mut seen = vec![false; lengths.len()];
    for row in 0..plan.num_rows() {
        let pieces = plan.row(row);
        assert!(pieces.iter().map(Piece::len).sum::<usize>() <= 1024);
        // Best fit places longest first, and a row keeps placement order.
        assert!(pieces.windows(2).all(|pair| pair[0].seq_len >= pair[1].seq_len));
        for piece in pieces {
            assert!(!seen[piece.source()], "sequence {} packed twice", piece.source_index);
            seen[piece.source()] = true;
            assert_eq!(piece.seq_len, lengths[piece.source()]);
        }
    }
    assert!(seen.iter().all(|&s| s));
}
