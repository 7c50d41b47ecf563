//! Writing a store: chunks are appended to files in a staging folder beside the target (a
//! bounded amount of memory, whatever the dataset size), and the folder is renamed into place
//! once the manifest is written. A write that stops early — an error, a crash, Ctrl-C —
//! leaves only the staging folder, which has no manifest and another name: nothing opens.

use crate::conversation::report::RecordReport;
use crate::error::{Error, Result};
use crate::labels::IGNORE_INDEX;
use crate::pack::layout::TokenIn;
use crate::store::format::{
    LabelStorage, Manifest, FORMAT, LABELS, LENGTHS, MANIFEST, OFFSETS, REPORT, SAMPLE_RECORD, SAMPLE_WINDOW, TOKENS,
    TRAINED, VERSION,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// One output file: buffered, hashed as it is written, its size counted.
struct Sink {
    file: BufWriter<File>,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl Sink {
    fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| io_error(path, &e))?;
        Ok(Self { file: BufWriter::with_capacity(1 << 20, file), hasher: blake3::Hasher::new(), bytes: 0 })
    }

    fn write(&mut self, bytes: &[u8], path: &Path) -> Result<()> {
        self.file.write_all(bytes).map_err(|e| io_error(path, &e))?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn finish(mut self, path: &Path) -> Result<(u64, blake3::Hash)> {
        self.file.flush().map_err(|e| io_error(path, &e))?;
        self.file.get_ref().sync_all().map_err(|e| io_error(path, &e))?;
        Ok((self.bytes, self.hasher.finalize()))
    }
}

fn io_error(path: &Path, error: &std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), message: error.to_string() }
}

/// A chunk of samples to append: `offsets` are local (`offsets[0] == 0`); `labels`, when
/// given, align with `tokens` (`None`: every token is its own label). Tokens and labels come
/// as int32 (Arrow's `list<int32>` columns, as they are) or int64.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a, T, L = i64> {
    pub tokens: &'a [T],
    pub offsets: &'a [i64],
    pub labels: Option<&'a [L]>,
    pub sample_record: &'a [i64],
    pub sample_window: &'a [i64],
}

/// Appends samples to a new store.
pub struct StoreWriter {
    target: PathBuf,
    staging: PathBuf,
    kind: String,
    sinks: BTreeMap<&'static str, Sink>,
    labels: Option<Sink>,
    /// Trained bits not yet filling a byte, and how many.
    pending_bits: (u8, u32),
    samples: u64,
    tokens: u64,
    records: u64,
    max_sample_length: u64,
    trained_tokens: u64,
    finished: bool,
}

impl StoreWriter {
    /// Start a store at `target` (a folder that must not exist yet, unless `overwrite`).
    /// `kind` is `"conversations"` or `"tokens"`.
    pub fn create(target: &Path, kind: &str, overwrite: bool) -> Result<Self> {
        if target.exists() && !overwrite {
            return Err(Error::Io {
                path: target.display().to_string(),
                message: "already exists; replace it explicitly (overwrite=True, --overwrite) or choose a new folder"
                    .into(),
            });
        }
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let staging = target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| io_error(&staging, &e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| io_error(&staging, &e))?;
        let mut sinks = BTreeMap::new();
        for name in [TOKENS, OFFSETS, LENGTHS, TRAINED, SAMPLE_RECORD, SAMPLE_WINDOW, REPORT] {
            sinks.insert(name, Sink::create(&staging.join(name))?);
        }
        let mut writer = Self {
            target: target.to_path_buf(),
            staging,
            kind: kind.to_string(),
            sinks,
            labels: None,
            pending_bits: (0, 0),
            samples: 0,
            tokens: 0,
            records: 0,
            max_sample_length: 0,
            trained_tokens: 0,
            finished: false,
        };
        writer.write(OFFSETS, &0i64.to_le_bytes())?;
        Ok(writer)
    }

    fn write(&mut self, name: &'static str, bytes: &[u8]) -> Result<()> {
        let path = self.staging.join(name);
        self.sinks.get_mut(name).expect("every sink is created with the writer").write(bytes, &path)
    }

    /// Count `records` more input records (those that left no sample count too).
    pub fn add_records(&mut self, records: u64) {
        self.records += records;
    }

    /// Append a chunk of samples. Token ids must fit uint32 and labels be -100 or an id;
    /// errors name the sample by its index in the whole store.
    pub fn append<T: TokenIn, L: TokenIn>(&mut self, chunk: &Chunk<'_, T, L>) -> Result<()> {
        let samples = chunk.offsets.len().saturating_sub(1);
        self.check(chunk, samples)?;
        let mut token_bytes = Vec::with_capacity(chunk.tokens.len() * 4);
        for &token in chunk.tokens {
            token_bytes.extend_from_slice(&(token.into() as u32).to_le_bytes());
        }
        self.write(TOKENS, &token_bytes)?;
        let mut offsets = Vec::with_capacity(samples * 8);
        let mut lengths = Vec::with_capacity(samples * 4);
        for pair in chunk.offsets.windows(2) {
            let length = (pair[1] - pair[0]) as u64;
            self.max_sample_length = self.max_sample_length.max(length);
            offsets.extend_from_slice(&((self.tokens + pair[1] as u64) as i64).to_le_bytes());
            lengths.extend_from_slice(&(length as u32).to_le_bytes());
        }
        self.write(OFFSETS, &offsets)?;
        self.write(LENGTHS, &lengths)?;
        let records: Vec<u8> = chunk.sample_record.iter().flat_map(|r| r.to_le_bytes()).collect();
        self.write(SAMPLE_RECORD, &records)?;
        let windows: Vec<u8> = chunk.sample_window.iter().flat_map(|&w| (w as i32).to_le_bytes()).collect();
        self.write(SAMPLE_WINDOW, &windows)?;
        self.write_labels(chunk)?;
        self.samples += samples as u64;
        self.tokens += chunk.tokens.len() as u64;
        Ok(())
    }

    fn check<T: TokenIn, L: TokenIn>(&self, chunk: &Chunk<'_, T, L>, samples: usize) -> Result<()> {
        let offsets_error = |message: &str| Err(Error::InvalidOffsets { message: message.to_string() });
        if chunk.offsets.first() != Some(&0) {
            return offsets_error("a chunk's offsets must start at 0");
        }
        if chunk.offsets.windows(2).any(|p| p[1] < p[0]) {
            return offsets_error("offsets decrease");
        }
        if chunk.offsets.last().copied() != i64::try_from(chunk.tokens.len()).ok() {
            return offsets_error("offsets must end at the chunk's token count");
        }
        if chunk.sample_record.len() != samples || chunk.sample_window.len() != samples {
            return offsets_error("sample_record and sample_window need one entry per sample");
        }
        if chunk.labels.is_some_and(|l| l.len() != chunk.tokens.len()) {
            return Err(Error::InvalidLabels {
                index: self.samples as usize,
                message: "labels do not hold one value per token".into(),
            });
        }
        for (local, pair) in chunk.offsets.windows(2).enumerate() {
            let index = self.samples as usize + local;
            let (start, end) = (pair[0] as usize, pair[1] as usize);
            if end - start > u32::MAX as usize {
                return Err(Error::InvalidOffsets { message: format!("sample {index} is longer than 2^32 tokens") });
            }
            if let Some(position) = chunk.tokens[start..end].iter().position(|&t| u32::try_from(t.into()).is_err()) {
                let value: i64 = chunk.tokens[start + position].into();
                return Err(Error::InvalidToken {
                    index,
                    position,
                    value,
                    problem: "outside the uint32 range of a store",
                });
            }
            if let Some(labels) = chunk.labels {
                let bad = labels[start..end].iter().position(|&v| {
                    let v: i64 = v.into();
                    (v < 0 && v != IGNORE_INDEX) || v > i64::from(u32::MAX)
                });
                if let Some(position) = bad {
                    let label: i64 = labels[start + position].into();
                    return Err(Error::InvalidLabels {
                        index,
                        message: format!(
                            "label {label} at position {position} is neither {IGNORE_INDEX} (ignore) nor a token id"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The trained mask always; every label too once some label is not the token itself.
    fn write_labels<T: TokenIn, L: TokenIn>(&mut self, chunk: &Chunk<'_, T, L>) -> Result<()> {
        let trained = |k: usize| chunk.labels.is_none_or(|l| l[k].into() != IGNORE_INDEX);
        let needs_labels = chunk.labels.is_some_and(|l| {
            l.iter().zip(chunk.tokens).any(|(&label, &token)| {
                let label: i64 = label.into();
                label != IGNORE_INDEX && label != token.into()
            })
        });
        if needs_labels && self.labels.is_none() {
            self.start_labels()?;
        }
        let mut bits = Vec::with_capacity(chunk.tokens.len() / 8 + 1);
        let (mut byte, mut filled) = self.pending_bits;
        for k in 0..chunk.tokens.len() {
            if trained(k) {
                byte |= 1 << filled;
                self.trained_tokens += 1;
            }
            filled += 1;
            if filled == 8 {
                bits.push(byte);
                (byte, filled) = (0, 0);
            }
        }
        self.pending_bits = (byte, filled);
        self.write(TRAINED, &bits)?;
        let mut values = Vec::new();
        if self.labels.is_some() {
            values.reserve(chunk.tokens.len() * 4);
            for (local, pair) in chunk.offsets.windows(2).enumerate() {
                for k in pair[0] as usize..pair[1] as usize {
                    let label: i64 = chunk.labels.map_or_else(|| chunk.tokens[k].into(), |l| l[k].into());
                    let label = i32::try_from(label).map_err(|_| Error::InvalidLabels {
                        index: self.samples as usize + local,
                        message: format!("label {label} does not fit the int32 labels of a store"),
                    })?;
                    values.extend_from_slice(&label.to_le_bytes());
                }
            }
        }
        let path = self.staging.join(LABELS);
        if let Some(sink) = self.labels.as_mut() {
            sink.write(&values, &path)?;
        }
        Ok(())
    }

    /// Switch to full labels: write those of the tokens already stored (each is its token or
    /// -100, as the mask says), read back from the staging files.
    fn start_labels(&mut self) -> Result<()> {
        for name in [TOKENS, TRAINED] {
            let path = self.staging.join(name);
            let sink = self.sinks.get_mut(name).expect("created with the writer");
            sink.file.flush().map_err(|e| io_error(&path, &e))?;
        }
        let read = |name: &str| -> Result<Vec<u8>> {
            let path = self.staging.join(name);
            let mut bytes = Vec::new();
            File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| io_error(&path, &e))?;
            Ok(bytes)
        };
        let tokens = read(TOKENS)?;
        let mut trained = read(TRAINED)?;
        trained.push(self.pending_bits.0);
        let path = self.staging.join(LABELS);
        let mut sink = Sink::create(&path)?;
        // Only the tokens of earlier chunks: the current chunk's are written after this.
        let mut values = Vec::with_capacity(tokens.len());
        for (k, token) in tokens.chunks_exact(4).take(self.tokens as usize).enumerate() {
            let token = u32::from_le_bytes([token[0], token[1], token[2], token[3]]);
            let label = if trained[k / 8] >> (k % 8) & 1 == 1 {
                i32::try_from(token).map_err(|_| Error::InvalidLabels {
                    index: 0,
                    message: format!("token {token} (position {k} of the store) does not fit the int32 labels a store needs once a label is not its token"),
                })?
            } else {
                IGNORE_INDEX as i32
            };
            values.extend_from_slice(&label.to_le_bytes());
        }
        sink.write(&values, &path)?;
        self.labels = Some(sink);
        Ok(())
    }

    /// Append the reports of the records in this chunk, one JSON object per line.
    pub fn append_reports(&mut self, reports: &[RecordReport]) -> Result<()> {
        let text = report_lines(reports)
            .map_err(|e| Error::Io { path: self.staging.join(REPORT).display().to_string(), message: e.to_string() })?;
        self.write(REPORT, &text)
    }

    /// Append report lines made by [`report_lines`] elsewhere (another process encoded the
    /// chunk); they must be whole lines.
    pub fn append_report_lines(&mut self, text: &[u8]) -> Result<()> {
        if !text.is_empty() && text.last() != Some(&b'\n') {
            return Err(Error::InvalidOption {
                name: "reports",
                message: "report lines must end with a newline".into(),
            });
        }
        self.write(REPORT, text)
    }

    /// Flush everything, write the manifest (with `source`: what produced the data) and move
    /// the store into place.
    pub fn finish(mut self, source: serde_json::Value) -> Result<Manifest> {
        let (byte, filled) = self.pending_bits;
        if filled > 0 {
            self.write(TRAINED, &[byte])?;
        }
        let mut files = BTreeMap::new();
        let mut fingerprint = blake3::Hasher::new();
        let mut sinks: Vec<(&'static str, Sink)> = std::mem::take(&mut self.sinks).into_iter().collect();
        if let Some(labels) = self.labels.take() {
            sinks.push((LABELS, labels));
        }
        sinks.sort_by_key(|(name, _)| *name);
        let labels =
            if sinks.iter().any(|(name, _)| *name == LABELS) { LabelStorage::Int32 } else { LabelStorage::TrainedMask };
        for (name, sink) in sinks {
            let (bytes, hash) = sink.finish(&self.staging.join(name))?;
            files.insert(name.to_string(), bytes);
            if name != REPORT {
                fingerprint.update(name.as_bytes());
                fingerprint.update(hash.as_bytes());
            }
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            kind: self.kind.clone(),
            samples: self.samples,
            tokens: self.tokens,
            records: self.records,
            labels,
            max_sample_length: self.max_sample_length,
            trained_tokens: self.trained_tokens,
            fingerprint: fingerprint.finalize().to_hex().to_string(),
            files,
            source,
        };
        let manifest_path = self.staging.join(MANIFEST);
        let text = serde_json::to_string_pretty(&manifest)
            .map_err(|e| Error::Io { path: manifest_path.display().to_string(), message: e.to_string() })?;
        std::fs::write(&manifest_path, text).map_err(|e| io_error(&manifest_path, &e))?;
        if self.target.exists() {
            // Overwriting: move the old store aside first, so no moment has a half of each.
            let old = self.staging.with_extension("old");
            std::fs::rename(&self.target, &old).map_err(|e| io_error(&self.target, &e))?;
            std::fs::remove_dir_all(&old).map_err(|e| io_error(&old, &e))?;
        }
        std::fs::rename(&self.staging, &self.target).map_err(|e| io_error(&self.target, &e))?;
        self.finished = true;
        Ok(manifest)
    }
}

impl Drop for StoreWriter {
    /// A writer dropped before `finish` removes its staging folder (best effort: a crash
    /// leaves it, under a name nothing opens).
    fn drop(&mut self) {
        if !self.finished {
            self.sinks.clear();
            self.labels = None;
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// Reports as the store keeps them: one JSON object per line.
///
/// # Errors
/// When a report cannot be serialised (never, for the report type).
pub fn report_lines(reports: &[RecordReport]) -> serde_json::Result<Vec<u8>> {
    let mut text = Vec::new();
    for report in reports {
        serde_json::to_writer(&mut text, report)?;
        text.push(b'\n');
    }
    Ok(text)
}
