//! Records from files, streamed: a `.jsonl` file line by line, a `.json` array element by
//! element (never the whole text in memory), delivered in chunks so a caller can encode and
//! write each chunk before the next is read. Every record keeps its index and its line, and
//! is parsed in parallel within its chunk.

use crate::conversation::records::{Origin, RawRecord};
use crate::error::{Error, Result};
use rayon::prelude::*;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::io::BufRead;
use std::path::Path;
use std::rc::Rc;

/// Read every record of a `.jsonl` / `.json` file at once.
pub fn read_records(path: &Path) -> Result<Vec<RawRecord>> {
    let mut all = Vec::new();
    read_record_chunks(path, usize::MAX, 0, &mut |chunk| {
        all.extend(chunk);
        Ok(())
    })?;
    Ok(all)
}

/// Read the records of `path` in chunks of at most `chunk_size`, numbering them from
/// `first_record`, and hand each chunk to `sink` before reading the next. A `.jsonl` file
/// (one JSON object per line): a bad line is an error for that record alone. A `.json` file
/// (one array of objects): a truncated or malformed file is an error for the whole file,
/// naming the line. Returns the number of records read.
pub fn read_record_chunks(
    path: &Path,
    chunk_size: usize,
    first_record: usize,
    sink: &mut dyn FnMut(Vec<RawRecord>) -> Result<()>,
) -> Result<usize> {
    read_in_blocks(path, chunk_size, first_record, BLOCK, sink)
}

/// [`read_record_chunks`], reading a `.jsonl` file `block` bytes at a time.
fn read_in_blocks(
    path: &Path,
    chunk_size: usize,
    first_record: usize,
    block_size: usize,
    sink: &mut dyn FnMut(Vec<RawRecord>) -> Result<()>,
) -> Result<usize> {
    let name = path.display().to_string();
    let file_error = |line: Option<usize>, message: String| Error::InvalidFile { path: name.clone(), line, message };
    let file = std::fs::File::open(path).map_err(|e| file_error(None, format!("cannot open: {e}")))?;
    let chunk_size = chunk_size.max(1);
    let mut input = std::io::BufReader::new(file);
    skip_byte_order_mark(&mut input).map_err(|e| file_error(None, format!("cannot read: {e}")))?;
    if path.extension().is_some_and(|e| e == "jsonl" || e == "ndjson") {
        // Blocks of whole lines: the lines are found and numbered in order (memchr), then
        // checked as UTF-8 and parsed in parallel, straight from the block.
        let mut pending: Vec<RawRecord> = Vec::new();
        let mut count = 0;
        let mut number = 0;
        let mut block: Vec<u8> = Vec::new();
        loop {
            let kept = block.len();
            block.resize(kept + block_size.max(1), 0);
            let read = read_full(&mut input, &mut block[kept..])
                .map_err(|e| file_error(Some(number + 1), format!("cannot read: {e}")))?;
            block.truncate(kept + read);
            let at_end = read == 0;
            let Some(end) = (if at_end { Some(block.len()) } else { memchr::memrchr(b'\n', &block).map(|i| i + 1) })
            else {
                continue; // one line longer than the block so far: read on
            };
            let (found, lines_after) = record_lines(&block[..end], number);
            number = lines_after;
            let lines: Vec<(Origin, &[u8])> = found
                .into_iter()
                .enumerate()
                .map(|(k, (start, stop, line))| {
                    (Origin { record: first_record + count + k, line: Some(line) }, &block[start..stop])
                })
                .collect();
            count += lines.len();
            let parsed: Vec<RawRecord> = crate::threads::install(|| {
                lines.into_par_iter().map(|(origin, line)| parse_line(origin, line)).collect()
            });
            for record in parsed {
                pending.push(record);
                if pending.len() == chunk_size {
                    sink(std::mem::take(&mut pending))?;
                }
            }
            if at_end {
                break;
            }
            block.drain(..end);
        }
        if !pending.is_empty() {
            sink(pending)?;
        }
        return Ok(count);
    }
    // A reader that counts newlines gives every record its line: records are objects, so when
    // one has been read the reader stands right after its closing brace.
    let newlines = Rc::new(Cell::new(0usize));
    let reader = CountingReader { inner: input, newlines: newlines.clone() };
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    // An error of the sink travels out of serde as a marker; the real error waits here.
    let sink_error: RefCell<Option<Error>> = RefCell::new(None);
    let visitor = ChunkVisitor { newlines, chunk_size, first_record, sink, sink_error: &sink_error };
    let result = serde::Deserializer::deserialize_seq(&mut deserializer, visitor)
        .and_then(|count| deserializer.end().map(|()| count));
    if let Some(error) = sink_error.into_inner() {
        return Err(error);
    }
    result.map_err(|e| file_error(Some(e.line()), format!("not a JSON array of records: {e}")))
}

/// A record's text (an element of a `.json` array), or why it is not text.
type LineText = std::result::Result<String, String>;

/// Bytes of a `.jsonl` file read at a time (whole lines of it are parsed in parallel).
const BLOCK: usize = 1 << 22;

/// Fill `buffer` from `input` unless the input ends first; the bytes read.
fn read_full(input: &mut impl std::io::Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The records of a whole `.jsonl` text as the file reader finds them: (start, end, line
/// number) of every line that is not blank, without its line break; a byte order mark
/// before the first is skipped.
pub fn jsonl_lines(data: &[u8]) -> Vec<(usize, usize, usize)> {
    jsonl_lines_after(data, 0, true)
}

/// [`jsonl_lines`] of a part of a file made of whole lines: numbered after `lines_before`,
/// and a byte order mark skipped only at the file's start (`file_start`).
pub fn jsonl_lines_after(data: &[u8], lines_before: usize, file_start: bool) -> Vec<(usize, usize, usize)> {
    let skip = if file_start && data.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let (found, _) = record_lines(&data[skip..], lines_before);
    found.into_iter().map(|(start, end, line)| (start + skip, end + skip, line)).collect()
}

/// The lines of `data` (whole lines) that hold a record: (start, end, line number) without
/// the line break, numbered after `lines_before`; and the number of the last line.
fn record_lines(data: &[u8], lines_before: usize) -> (Vec<(usize, usize, usize)>, usize) {
    let mut found = Vec::new();
    let (mut at, mut number) = (0, lines_before);
    for line in data.split_inclusive(|&b| b == b'\n') {
        let start = at;
        at += line.len();
        number += 1;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !is_blank(line) {
            found.push((start, start + line.len(), number));
        }
    }
    (found, number)
}

/// A line with nothing but white space (as `str::trim` reads it) holds no record.
fn is_blank(line: &[u8]) -> bool {
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        Some(b) if b.is_ascii() => false,
        Some(_) => std::str::from_utf8(line).is_ok_and(|t| t.trim().is_empty()),
    }
}

/// One `.jsonl` line as a record. A line that is not UTF-8 is a bad record, not a bad file:
/// the rest still reads.
pub fn parse_line(origin: Origin, line: &[u8]) -> RawRecord {
    let value = std::str::from_utf8(line)
        .map_err(|e| {
            origin.error(
                "",
                format!("not valid UTF-8 (byte {} of the line cannot start or continue a character)", e.valid_up_to()),
            )
        })
        .and_then(|text| {
            serde_json::from_str::<Value>(text).map_err(|e| origin.error("", format!("not valid JSON: {e}")))
        });
    RawRecord { origin, value }
}

/// Skip a UTF-8 byte order mark (what Windows tools write first): it is not part of the
/// first record.
fn skip_byte_order_mark(input: &mut std::io::BufReader<std::fs::File>) -> std::io::Result<()> {
    if input.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        input.consume(3);
    }
    Ok(())
}

/// Parse each record's text, in parallel (each is independent).
fn parse_all(texts: Vec<(Origin, LineText)>) -> Vec<RawRecord> {
    crate::threads::install(|| {
        texts
            .into_par_iter()
            .map(|(origin, text)| RawRecord {
                origin,
                value: text.map_err(|message| origin.error("", message)).and_then(|text| {
                    serde_json::from_str::<Value>(&text).map_err(|e| origin.error("", format!("not valid JSON: {e}")))
                }),
            })
            .collect()
    })
}

/// Counts the newlines of what passes through.
struct CountingReader<R> {
    inner: R,
    newlines: Rc<Cell<usize>>,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        let found = memchr::memchr_iter(b'\n', &buf[..read]).count();
        self.newlines.set(self.newlines.get() + found);
        Ok(read)
    }
}

/// Visits the top-level array, turning elements into records with their lines, a chunk at a
/// time.
struct ChunkVisitor<'a> {
    newlines: Rc<Cell<usize>>,
    chunk_size: usize,
    first_record: usize,
    sink: &'a mut dyn FnMut(Vec<RawRecord>) -> Result<()>,
    sink_error: &'a RefCell<Option<Error>>,
}

impl ChunkVisitor<'_> {
    fn deliver<E: serde::de::Error>(&mut self, pending: &mut Vec<(Origin, LineText)>) -> std::result::Result<(), E> {
        let chunk = parse_all(std::mem::take(pending));
        (self.sink)(chunk).map_err(|error| {
            *self.sink_error.borrow_mut() = Some(error);
            E::custom("stopped by the caller")
        })
    }
}

impl<'de> serde::de::Visitor<'de> for ChunkVisitor<'_> {
    type Value = usize;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON array of records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> std::result::Result<usize, A::Error> {
        let mut pending: Vec<(Origin, LineText)> = Vec::new();
        let mut count = 0;
        while let Some(raw) = seq.next_element::<Box<serde_json::value::RawValue>>()? {
            let inside = memchr::memchr_iter(b'\n', raw.get().as_bytes()).count();
            let line = self.newlines.get().saturating_sub(inside) + 1;
            pending.push((Origin { record: self.first_record + count, line: Some(line) }, Ok(raw.get().to_string())));
            count += 1;
            if pending.len() == self.chunk_size {
                self.deliver(&mut pending)?;
            }
        }
        if !pending.is_empty() {
            self.deliver(&mut pending)?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn chunks_keep_indices_and_lines_in_both_formats() {
        let dir = std::env::temp_dir().join(format!("seqpack-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jsonl = write(&dir, "a.jsonl", "{\"x\": 1}\n\n{\"x\": 2}\n{bad\n{\"x\": 4}\n");
        let json = write(&dir, "a.json", "[\n  {\"x\": 1},\n  {\"x\": 2},\n\n  {\"x\":\n 3}\n]\n");
        for (path, lines) in [(&jsonl, [1, 3, 4, 5]), (&json, [2, 3, 5, 0])] {
            let mut chunks = Vec::new();
            let count = read_record_chunks(path, 2, 10, &mut |chunk| {
                chunks
                    .push(chunk.iter().map(|r| (r.origin.record, r.origin.line, r.value.is_ok())).collect::<Vec<_>>());
                Ok(())
            })
            .unwrap();
            let flat: Vec<_> = chunks.concat();
            assert_eq!(count, flat.len());
            assert!(chunks.iter().all(|c| c.len() <= 2));
            for (k, (record, line, _)) in flat.iter().enumerate() {
                assert_eq!(*record, 10 + k);
                assert_eq!(*line, Some(lines[k]));
            }
        }
        // The bad line is that record's error, not the file's.
        let all = read_records(&jsonl).unwrap();
        assert!(all[2].value.is_err() && all[3].value.is_ok());
        // A sink error stops the read and is returned as it is.
        let error = read_record_chunks(&json, 1, 0, &mut |_| Err(Error::EmptyInput)).unwrap_err();
        assert_eq!(error, Error::EmptyInput);
        let truncated = write(&dir, "t.json", "[{\"x\": 1},\n{\"x\": 2");
        assert!(matches!(read_records(&truncated), Err(Error::InvalidFile { line: Some(2), .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn jsonl_lines_of_a_whole_text_are_the_file_readers() {
        let text = b"\xEF\xBB\xBF{\"x\": 1}\r\n\n  \xE3\x80\x80 \n\xFF{\n{\"x\": 4}";
        let lines = jsonl_lines(text);
        let found: Vec<(&[u8], usize)> = lines.iter().map(|&(s, e, n)| (&text[s..e], n)).collect();
        assert_eq!(found, [(&b"{\"x\": 1}"[..], 1), (&b"\xFF{"[..], 4), (&b"{\"x\": 4}"[..], 5)]);
        let dir = std::env::temp_dir().join(format!("seqpack-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l.jsonl");
        std::fs::write(&path, text).unwrap();
        let read: Vec<_> = read_records(&path).unwrap().iter().map(|r| r.origin.line.unwrap()).collect();
        assert_eq!(read, [1, 4, 5]);
        std::fs::remove_dir_all(&dir).unwrap();
        // In parts cut after a line break: the same lines, numbered through.
        for cut in (0..=text.len()).filter(|&k| k == 0 || text[k - 1] == b'\n') {
            let (head, tail) = text.split_at(cut);
            let before = head.split(|&b| b == b'\n').count() - 1;
            let mut parts = jsonl_lines_after(head, 0, true);
            let shifted = jsonl_lines_after(tail, before, cut == 0).into_iter().map(|(s, e, n)| (s + cut, e + cut, n));
            parts.extend(shifted);
            assert_eq!(parts, lines, "cut at {cut}");
        }
        // A byte order mark is only skipped at the file's start.
        assert_eq!(jsonl_lines_after(b"\xEF\xBB\xBF{}\n", 3, false), [(0, 5, 4)]);
    }

    #[test]
    fn jsonl_lines_are_the_same_whatever_the_block_size() {
        let dir = std::env::temp_dir().join(format!("seqpack-blocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.jsonl");
        let long = format!("{{\"x\": \"{}\"}}", "é".repeat(40));
        let mut bytes = b"\xEF\xBB\xBF{\"x\": 1}\r\n\n  \xE3\x80\x80 \n".to_vec();
        bytes.extend_from_slice(long.as_bytes());
        bytes.extend_from_slice(b"\n\xFF{\"x\": 2}\n{bad\n\n{\"x\": 4}");
        std::fs::write(&path, &bytes).unwrap();
        for block in [1, 2, 3, 7, 16, 50, 83, 84, 85, 200, BLOCK] {
            for chunk in [1, 2, 100] {
                let mut seen = Vec::new();
                let count = read_in_blocks(&path, chunk, 10, block, &mut |records| {
                    assert!(!records.is_empty() && records.len() <= chunk);
                    seen.extend(records.into_iter().map(|r| (r.origin.record, r.origin.line, r.value)));
                    Ok(())
                })
                .unwrap();
                assert_eq!(count, 5, "block {block}");
                let lines: Vec<_> = seen.iter().map(|(record, line, _)| (*record, line.unwrap())).collect();
                assert_eq!(lines, [(10, 1), (11, 4), (12, 5), (13, 6), (14, 8)], "block {block}");
                assert_eq!(seen[1].2.as_ref().unwrap()["x"].as_str().unwrap().chars().count(), 40);
                let utf8 = seen[2].2.as_ref().unwrap_err().to_string();
                assert!(utf8.contains("not valid UTF-8 (byte 0"), "{utf8}");
                assert!(seen[3].2.as_ref().unwrap_err().to_string().contains("not valid JSON"));
                assert_eq!(seen[4].2.as_ref().unwrap()["x"], 4);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_byte_spoils_one_line_and_a_byte_order_mark_none() {
        let dir = std::env::temp_dir().join(format!("seqpack-reader-bytes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.jsonl");
        std::fs::write(&path, b"\xEF\xBB\xBF{\"x\": 1}\r\n{\"x\": \"\xFF\"}\n{\"x\": 3}\n").unwrap();
        let all = read_records(&path).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].value.as_ref().unwrap()["x"], 1);
        let error = all[1].value.as_ref().unwrap_err().to_string();
        assert!(error.contains("record 1") && error.contains("line 2") && error.contains("not valid UTF-8"), "{error}");
        assert_eq!(all[2].value.as_ref().unwrap()["x"], 3);
        let array = dir.join("b.json");
        std::fs::write(&array, b"\xEF\xBB\xBF[{\"x\": 1}]").unwrap();
        assert_eq!(read_records(&array).unwrap()[0].value.as_ref().unwrap()["x"], 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
