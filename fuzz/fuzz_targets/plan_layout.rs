//! Plan + layout over arbitrary lengths and options: never a panic; every token is placed
//! once or reported; rows are `max_length` wide; labels are -100 or the token; a store's
//! trained mask gives the rows (and padding-free batch, and trained count) of the labels it
//! stands for.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use seqpack_core::pack::{
    materialize, materialize_flat, plan, trained_tokens, Keep, Labels, LayoutOptions, Overlong, PlanOptions, Sequences,
    Strategy,
};
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
    mask: Vec<u8>,
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

    // A store's uint32 tokens with a trained mask against the labels it stands for, bit by bit.
    let ids: Vec<u32> = (0..total as u32).map(|t| t.wrapping_mul(7) + 3).collect();
    let bits: Vec<u8> =
        (0..total.div_ceil(8)).map(|b| input.mask.get(b % input.mask.len().max(1)).copied().unwrap_or(0xff)).collect();
    let given: Vec<i64> =
        (0..total).map(|t| if (bits[t / 8] >> (t % 8)) & 1 == 1 { i64::from(ids[t]) } else { IGNORE_INDEX }).collect();
    let (Ok(masked), Ok(explicit)) =
        (Sequences::new(&ids, &offsets, Labels::Trained(&bits)), Sequences::new(&ids, &offsets, Labels::Given(&given)))
    else {
        return;
    };
    let layout = LayoutOptions::default();
    let (Ok(a), Ok(b)) =
        (materialize::<u32, i64>(&masked, &planned, &layout), materialize::<u32, i64>(&explicit, &planned, &layout))
    else {
        panic!("a plan that materialises with token labels materialises with a mask");
    };
    assert_eq!(a, b);
    let written = a.labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
    assert_eq!(trained_tokens(&masked, &planned.pieces), written);
    assert_eq!(trained_tokens(&explicit, &planned.pieces), written);
    assert_eq!(
        materialize_flat::<u32, i64>(&masked, &planned, &layout, None).ok(),
        materialize_flat::<u32, i64>(&explicit, &planned, &layout, None).ok()
    );
});
