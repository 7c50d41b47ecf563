//! Records into a store, chunk by chunk: read and encode a chunk (in parallel), hand it to a
//! writer thread, and go on with the next while it is written, so the disk and the hashing
//! overlap with encoding. At most two encoded chunks are in flight: memory stays bounded by
//! the chunk size whatever the dataset size.

use crate::conversation::encode::EncodeOptions;
use crate::conversation::pipeline::{encode_records, Encoded};
use crate::conversation::reader::read_record_chunks;
use crate::conversation::records::RawRecord;
use crate::conversation::template::Template;
use crate::conversation::tokenize::Tokenizer;
use crate::error::{Error, Result};
use crate::store::writer::{Chunk, StoreWriter};
use std::path::Path;
use std::sync::mpsc::sync_channel;

/// Append one encoded chunk of `records` input records.
pub fn append_encoded(writer: &mut StoreWriter, encoded: &Encoded, records: usize) -> Result<usize> {
    let flat = &encoded.flat;
    writer.append(&Chunk {
        tokens: &flat.tokens,
        offsets: &flat.offsets,
        labels: Some(&flat.labels),
        sample_record: &flat.sample_record,
        sample_window: &flat.sample_window,
    })?;
    writer.append_reports(&encoded.reports)?;
    writer.add_records(records as u64);
    Ok(flat.sample_record.len())
}

/// Encode a chunk of records and append it.
pub fn encode_into(
    writer: &mut StoreWriter,
    records: Vec<RawRecord>,
    template: &Template,
    tokenizer: &Tokenizer,
    options: &EncodeOptions,
) -> Result<(usize, usize)> {
    let count = records.len();
    let encoded = encode_records(records, template, tokenizer, options)?;
    Ok((count, append_encoded(writer, &encoded, count)?))
}

/// Read `path` (`.json` / `.jsonl`) in chunks of `chunk_size` records numbered from
/// `first_record`, encode each and append it to `writer`, writing one chunk while the next is
/// encoded. `progress(records so far)` runs after each chunk is encoded and may stop the work
/// by returning an error. Returns (records, samples) appended.
#[allow(clippy::too_many_arguments, reason = "the whole ingest of one file in one call")]
pub fn encode_file_into(
    writer: &mut StoreWriter,
    path: &Path,
    first_record: usize,
    chunk_size: usize,
    template: &Template,
    tokenizer: &Tokenizer,
    options: &EncodeOptions,
    progress: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<(usize, usize)> {
    std::thread::scope(|scope| {
        let (sender, receiver) = sync_channel::<(usize, Encoded)>(1);
        let written = scope.spawn(move || -> Result<usize> {
            let mut samples = 0;
            for (records, encoded) in receiver {
                samples += append_encoded(writer, &encoded, records)?;
            }
            Ok(samples)
        });
        let mut records_read = 0;
        let read = read_record_chunks(path, chunk_size, first_record, &mut |chunk| {
            let count = chunk.len();
            let encoded = encode_records(chunk, template, tokenizer, options)?;
            // The writer stopped on an error: stop reading; its error is returned below.
            sender.send((count, encoded)).map_err(|_| Error::Io {
                path: path.display().to_string(),
                message: "the store writer stopped".into(),
            })?;
            records_read += count;
            progress(first_record + records_read)
        });
        drop(sender);
        let samples = written.join().map_err(|_| Error::Io {
            path: path.display().to_string(),
            message: "the store writer thread panicked".into(),
        })?;
        // A writer error explains a read that stopped because of it.
        let samples = samples.map_err(|e| e.in_file(path))?;
        read.map_err(|e| e.in_file(path))?;
        Ok((records_read, samples))
    })
}
