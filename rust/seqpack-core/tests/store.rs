//! The token store written chunk by chunk reads back exactly, its manifest matches its files,
//! and what is truncated, changed or unfinished does not open.

use seqpack_core::store::format::{self, check, check_offsets, LabelStorage};
use seqpack_core::store::writer::{Chunk, StoreWriter};
use seqpack_core::{Error, IGNORE_INDEX};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqpack-store-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sizes(store: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(store)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len())
        })
        .collect()
}

fn read_u32(path: &Path) -> Vec<u32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn read_i64(path: &Path) -> Vec<i64> {
    std::fs::read(path).unwrap().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
}

/// Samples of a chunk: (tokens, labels).
type Samples = Vec<(Vec<i64>, Vec<i64>)>;

fn append(writer: &mut StoreWriter, samples: &Samples, first_record: i64) {
    let tokens: Vec<i64> = samples.iter().flat_map(|(t, _)| t.clone()).collect();
    let labels: Vec<i64> = samples.iter().flat_map(|(_, l)| l.clone()).collect();
    let mut offsets = vec![0i64];
    for (t, _) in samples {
        offsets.push(offsets.last().unwrap() + t.len() as i64);
    }
    let records: Vec<i64> = (0..samples.len() as i64).map(|k| first_record + k).collect();
    let windows = vec![0i64; samples.len()];
    let chunk = Chunk {
        tokens: &tokens,
        offsets: &offsets,
        labels: Some(&labels),
        sample_record: &records,
        sample_window: &windows,
    };
    writer.append(&chunk).unwrap();
}

fn masked(tokens: &[i64], trained: &[bool]) -> (Vec<i64>, Vec<i64>) {
    (tokens.to_vec(), tokens.iter().zip(trained).map(|(&t, &on)| if on { t } else { IGNORE_INDEX }).collect())
}

#[test]
fn chunks_read_back_exactly_and_the_manifest_matches_the_files() {
    let dir = temp("roundtrip");
    let target = dir.join("store");
    // Chunks of 3, 1 and 2 samples; token counts that leave partial bytes of the bit mask.
    let chunks: Vec<Samples> = vec![
        vec![
            masked(&[5, 6, 7], &[false, true, true]),
            masked(&[8], &[true]),
            masked(&[9, 10, 11, 12, 13], &[false, false, true, false, true]),
        ],
        vec![masked(&[4_000_000_000, 1], &[true, false])],
        vec![masked(&[2, 3, 4], &[true, true, true]), masked(&[1, 1], &[false, false])],
    ];
    let mut writer = StoreWriter::create(&target, "tokens", false).unwrap();
    let mut first = 0;
    for chunk in &chunks {
        append(&mut writer, chunk, first);
        writer.add_records(chunk.len() as u64);
        first += chunk.len() as i64;
    }
    let manifest = writer.finish(serde_json::json!({"test": true})).unwrap();
    let all: Samples = chunks.concat();
    assert_eq!(manifest.samples, 6);
    assert_eq!(manifest.tokens, 16);
    assert_eq!(manifest.records, 6);
    assert_eq!(manifest.labels, LabelStorage::TrainedMask);
    assert_eq!(manifest.max_sample_length, 5);
    let trained = all.iter().flat_map(|(_, l)| l).filter(|&&l| l != IGNORE_INDEX).count();
    assert_eq!(manifest.trained_tokens, trained as u64);

    let text = std::fs::read_to_string(target.join(format::MANIFEST)).unwrap();
    let checked = check("store", &text, &sizes(&target)).unwrap();
    assert_eq!(checked, manifest);
    let tokens = read_u32(&target.join(format::TOKENS));
    let expected: Vec<u32> = all.iter().flat_map(|(t, _)| t.iter().map(|&x| x as u32)).collect();
    assert_eq!(tokens, expected);
    let offsets = read_i64(&target.join(format::OFFSETS));
    let lengths = read_u32(&target.join(format::LENGTHS));
    assert_eq!(lengths, [3, 1, 5, 2, 3, 2]);
    assert_eq!(offsets, [0, 3, 4, 9, 11, 14, 16]);
    check_offsets("store", &offsets, &lengths, manifest.tokens).unwrap();
    let bits = std::fs::read(target.join(format::TRAINED)).unwrap();
    let labels: Vec<i64> = all.iter().flat_map(|(_, l)| l.clone()).collect();
    for (k, &label) in labels.iter().enumerate() {
        assert_eq!(bits[k / 8] >> (k % 8) & 1 == 1, label != IGNORE_INDEX, "token {k}");
    }
    assert_eq!(read_i64(&target.join(format::SAMPLE_RECORD)), [0, 1, 2, 3, 4, 5]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_label_other_than_the_token_switches_to_full_labels_for_every_token() {
    let dir = temp("labels");
    let target = dir.join("store");
    let mut writer = StoreWriter::create(&target, "tokens", false).unwrap();
    let first: Samples = vec![masked(&[5, 6, 7], &[false, true, true]), masked(&[8, 9], &[true, true])];
    append(&mut writer, &first, 0);
    // The second chunk trains token 2 to predict 99: labels can no longer be a mask.
    append(&mut writer, &vec![(vec![1, 2, 3], vec![IGNORE_INDEX, 99, 3])], 2);
    let manifest = writer.finish(serde_json::Value::Null).unwrap();
    assert_eq!(manifest.labels, LabelStorage::Int32);
    let labels: Vec<i32> = std::fs::read(target.join(format::LABELS))
        .unwrap()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(labels, [-100, 6, 7, 8, 9, -100, 99, 3]);
    let text = std::fs::read_to_string(target.join(format::MANIFEST)).unwrap();
    check("store", &text, &sizes(&target)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_changed_or_unfinished_stores_do_not_open() {
    let dir = temp("broken");
    let target = dir.join("store");
    let mut writer = StoreWriter::create(&target, "tokens", false).unwrap();
    append(&mut writer, &vec![masked(&[1, 2, 3, 4], &[true; 4])], 0);
    writer.finish(serde_json::Value::Null).unwrap();
    let text = std::fs::read_to_string(target.join(format::MANIFEST)).unwrap();

    let mut truncated = sizes(&target);
    truncated.insert(format::TOKENS.into(), 12);
    let error = check("store", &text, &truncated).unwrap_err().to_string();
    assert!(error.contains("tokens.u32 holds 12 bytes") && error.contains("truncated"), "{error}");
    let mut missing = sizes(&target);
    missing.remove(format::OFFSETS);
    assert!(check("store", &text, &missing).unwrap_err().to_string().contains("offsets.i64 is missing"));
    let newer = text.replace("\"version\": 1", "\"version\": 9");
    assert!(check("store", &newer, &sizes(&target)).unwrap_err().to_string().contains("layout version 9"));
    assert!(check("store", "{\"format\": ", &sizes(&target)).unwrap_err().to_string().contains("interrupted"));
    assert!(matches!(check_offsets("s", &[0, 3, 2], &[3, 1], 2), Err(Error::InvalidStore { .. })));

    // A writer dropped before finishing leaves nothing at the target and removes its staging.
    let unfinished = dir.join("unfinished");
    {
        let mut writer = StoreWriter::create(&unfinished, "tokens", false).unwrap();
        append(&mut writer, &vec![masked(&[1], &[true])], 0);
    }
    assert!(!unfinished.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "only the finished store is left");
    // An existing store is not replaced unless asked.
    assert!(matches!(StoreWriter::create(&target, "tokens", false), Err(Error::Io { .. })));
    let mut writer = StoreWriter::create(&target, "tokens", true).unwrap();
    append(&mut writer, &vec![masked(&[7, 7], &[true, true])], 0);
    assert_eq!(writer.finish(serde_json::Value::Null).unwrap().tokens, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_samples_are_named_by_their_index_in_the_store() {
    let dir = temp("bad");
    let mut writer = StoreWriter::create(&dir.join("store"), "tokens", false).unwrap();
    append(&mut writer, &vec![masked(&[1, 2], &[true, true]); 3], 0);
    let tokens = [1i64, -4, 2];
    let chunk: Chunk<'_, i64> =
        Chunk { tokens: &tokens, offsets: &[0, 1, 3], labels: None, sample_record: &[3, 4], sample_window: &[0, 0] };
    let error = writer.append(&chunk).unwrap_err();
    assert!(matches!(error, Error::InvalidToken { index: 4, position: 0, value: -4, .. }), "{error}");
    let labels = [1i64, -7, 2];
    let chunk = Chunk {
        tokens: &[1i64, 2, 3],
        offsets: &[0, 3],
        labels: Some(&labels),
        sample_record: &[3],
        sample_window: &[0],
    };
    assert!(matches!(writer.append(&chunk), Err(Error::InvalidLabels { index: 3, .. })));
    drop(writer);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The files (all but the manifest, which names the time it was written) of a store of one
/// chunk of `tokens` and `labels`, two samples.
fn one_chunk_store<T: seqpack_core::pack::layout::TokenIn>(
    target: &Path,
    tokens: &[T],
    labels: &[T],
) -> Vec<(String, Vec<u8>)> {
    let mut writer = StoreWriter::create(target, "tokens", false).unwrap();
    let chunk =
        Chunk { tokens, offsets: &[0, 3, 7], labels: Some(labels), sample_record: &[0, 1], sample_window: &[0, 0] };
    writer.append(&chunk).unwrap();
    writer.add_records(2);
    writer.finish(serde_json::Value::Null).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(target)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "manifest.json")
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn int32_chunks_write_the_same_store_as_int64_ones() {
    // What seqpack.ray's driver appends: Arrow's int32 columns as they are, no conversion.
    let dir = temp("int32");
    let tokens: Vec<i64> = vec![5, 6, 7, 8, 9, 10, 11];
    let labels: Vec<i64> = vec![IGNORE_INDEX, 6, 7, 3, IGNORE_INDEX, 10, 11]; // 3: a label of its own
    let narrow = |v: &[i64]| v.iter().map(|&x| i32::try_from(x).unwrap()).collect::<Vec<i32>>();
    let wide = one_chunk_store(&dir.join("wide"), &tokens, &labels);
    let narrowed = one_chunk_store(&dir.join("narrow"), &narrow(&tokens), &narrow(&labels));
    assert!(wide.iter().any(|(name, _)| name.starts_with("labels")), "full labels were needed");
    assert_eq!(wide, narrowed);
}
