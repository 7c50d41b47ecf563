//! The conversation half end to end: raw records (JSON values, or why they could not be
//! read) → parsed conversations → labelled samples with a report per record → flat arrays.
//! Records are independent, so every step runs in parallel and the result does not depend
//! on the thread count.

use crate::conversation::encode::{encode_all, EncodeOptions, Parsed};
use crate::conversation::flatten::{flatten, Flat};
use crate::conversation::records::{parse_record, RawRecord};
use crate::conversation::report::RecordReport;
use crate::conversation::template::Template;
use crate::conversation::tokenize::Tokenizer;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Encoded records: the flat samples and one report per record, in input order.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub flat: Flat,
    pub reports: Vec<RecordReport>,
}

/// Parse, render, tokenize, truncate, label and flatten `records`.
pub fn encode_records(
    records: Vec<RawRecord>,
    template: &Template,
    tokenizer: &Tokenizer,
    options: &EncodeOptions,
) -> Result<Encoded> {
    if records.is_empty() {
        return Err(Error::EmptyInput);
    }
    let parsed: Vec<Parsed> = crate::threads::install(|| {
        records
            .into_par_iter()
            .map(|raw| Parsed {
                record: raw.origin.record,
                line: raw.origin.line,
                conversation: raw
                    .value
                    .and_then(|value| parse_record(&value, options.format, &options.mapping, raw.origin)),
            })
            .collect()
    });
    let (samples, reports) = encode_all(&parsed, template, tokenizer, options)?;
    let flat = flatten(&samples)?;
    // Freeing a million small vectors is work too: in parallel, not after the fact on one thread.
    crate::threads::install(|| {
        rayon::join(|| samples.into_par_iter().for_each(drop), || parsed.into_par_iter().for_each(drop))
    });
    Ok(Encoded { flat, reports })
}
