//! Plan + layout over arbitrary lengths and options: never a panic; every token is placed
//! once or reported; rows are `max_length` wide; labels are -100 or the token.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use seqpack_core::pack::{materialize, plan, Keep, Labels, LayoutOptions, Overlong, PlanOptions, Sequences, Strategy};
use seqpack_core::IGNORE_INDEX;

#[derive(Debug, Arbitrary)]
struct Input {
    lengths: Vec<u8>,
    max_length: u8,
    strategy: u8,
    overlong: u8,
    max_seqs: Option<u8>,
    pad_to: u8,
    seed: Option<u64>,
}

fuzz_target!(|input: Input| {
    let lengths: Vec<u32> = input.lengths.iter().take(200).map(|&n| u32::from(n)).collect();
    let mut options = PlanOptions::new(usize::from(input.max_length));
    options.strategy =
        [Strategy::BestFitDecreasing, Strategy::FirstFitDecreasing, Strategy::Sequential, Strategy::Wrapped]
            [usize::from(input.strategy % 4)];
    options.overlong = match input.overlong % 4 {
        0 => Overlong::Error,
        1 => Overlong::Drop,
        2 => Overlong::Truncate(Keep::Head),
        _ => Overlong::Split,
    };
    options.max_seqs_per_row = input.max_seqs.map(usize::from);
    options.pad_rows_to_multiple_of = usize::from(input.pad_to % 4);
    options.seed = input.seed;
    let Ok(planned) = plan(&lengths, &options) else { return };
    let total: usize = lengths.iter().map(|&n| n as usize).sum();
    let tokens: Vec<i64> = (0..total as i64).collect();
    let mut offsets = vec![0i64];
    for &n in &lengths {
        offsets.push(offsets.last().copied().unwrap_or(0) + i64::from(n));
    }
    let Ok(sequences) = Sequences::new(&tokens, &offsets, Labels::Tokens) else { return };
    let Ok(packed) = materialize::<i64, i64>(&sequences, &planned, &LayoutOptions::default()) else { return };
    let width = options.max_length;
    assert_eq!(packed.input_ids.len(), planned.num_rows() * width);
    let placed: usize = planned.pieces.iter().map(|p| p.len()).sum();
    let lost: usize = planned.events.iter().map(|e| e.tokens_removed).sum();
    assert_eq!(placed + lost, total, "every token placed once or reported");
    for (cell, &label) in packed.labels.iter().enumerate() {
        assert!(label == IGNORE_INDEX || label == packed.input_ids[cell]);
    }
});
