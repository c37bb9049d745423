//! A request body to events, or a typed [`Refusal`] saying what is wrong and where.
//!
//! - Body: JSON by [`crate::json_body`]'s rule whatever the content type (a JSON array of
//!   objects or a single object is one document; more than one top-level value is NDJSON, one
//!   event per line), raw lines with `text/plain`, or lines of any type with a named parser.
//!   `gzip` and `zstd` encodings.
//! - All or nothing: if any line is bad the refusal lists each bad line's number, column, field
//!   and reason, and nothing of the body is stored.
//! - Schemas: in a repository bound to a subject, every event must fit it (the gatekeeper),
//!   else the refusal lists each event's number, field and reason. Binary Avro is read there
//!   too: datums one after another, each framed by a schema id (`0x00`), a CRC-64 (`C3 01`) or
//!   a SHA-256 (`0x81`).
//!
//! What a refusal becomes on the wire (a status code, a JSON body) is the HTTP layer's choice,
//! made in one place there.

use std::io::Read;

use eddy_event::{Event, ParseError, Parser};
use eddy_schema::avro_json::Rejection;
use eddy_schema::gate::GateError;

use crate::json_body::{self, JsonBody};
use crate::repository::{ParseLine, Repository};
use crate::StoreError;

/// Most bad lines a refusal lists (its count covers all of them).
pub const MAX_LISTED_ERRORS: usize = 100;

/// A line (or array element) that does not parse.
#[derive(Debug)]
pub struct BadLine {
    /// Its 1-based number.
    pub line: usize,
    /// Where in it and why.
    pub error: ParseError,
}

/// Why a body was refused; nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The body is over `http.max_body_bytes` (as sent, or once decompressed).
    #[error("the request body is over the limit of {limit} bytes (http.max_body_bytes)")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// One event is over `http.max_event_bytes`.
    #[error("event {event} is {size} bytes, over the limit of {limit} bytes (http.max_event_bytes); nothing was stored")]
    EventTooLarge {
        /// Its 1-based number.
        event: usize,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The content encoding is not one eddy reads.
    #[error("Content-Encoding {encoding:?} is not supported; use gzip, zstd or none")]
    UnsupportedEncoding {
        /// The encoding given.
        encoding: String,
    },
    /// A compressed body that does not decompress.
    #[error("the {encoding} body ({size} bytes) does not decompress after {output} bytes of output: {error}")]
    Undecodable {
        /// Its encoding.
        encoding: String,
        /// Its compressed size.
        size: usize,
        /// Bytes decompressed before the error.
        output: usize,
        /// The decoder's error.
        error: std::io::Error,
    },
    /// The body is not UTF-8.
    #[error("the body is not UTF-8 (byte {byte})")]
    NotUtf8 {
        /// The offset of the first byte that is not.
        byte: usize,
    },
    /// A JSON document that does not parse.
    #[error("the JSON body is invalid at line {line}, column {column}: {error}")]
    InvalidJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's error.
        error: serde_json::Error,
    },
    /// Lines that do not parse.
    #[error("{} of {total} events are invalid; nothing was stored", bad.len())]
    InvalidEvents {
        /// Every bad line, in order.
        bad: Vec<BadLine>,
        /// Events in the body, good and bad.
        total: usize,
    },
    /// Binary Avro sent to a repository bound to no schema.
    #[error("repository {repository:?} is bound to no schema subject, so binary Avro cannot be read; bind one with `schema = {{ subject = \"...\" }}`")]
    NoSchema {
        /// The repository.
        repository: String,
    },
    /// The repository's schema cannot be had from the registry.
    #[error("{error}; nothing was stored")]
    NoContract {
        /// Why.
        error: GateError,
        /// Events in the body.
        events: usize,
    },
    /// Events that do not fit the repository's schema.
    #[error("{} of {total} events do not fit the schema of subject {subject:?}; nothing was stored", refused.len())]
    SchemaMismatch {
        /// Each refused event's index (0-based) and reasons.
        refused: Vec<(usize, Vec<Rejection>)>,
        /// Events in the body.
        total: usize,
        /// The subject they were checked against.
        subject: String,
    },
    /// A binary Avro datum that cannot be read (where the next one would start is unknown).
    #[error("datum {datum} (byte {byte}) cannot be read; nothing was stored")]
    UnreadableDatum {
        /// Its 1-based number.
        datum: usize,
        /// Its offset in the body.
        byte: usize,
        /// Why.
        reason: String,
    },
    /// The events are good but could not be stored.
    #[error("{error}")]
    NotStored {
        /// Why.
        error: StoreError,
        /// Events in the body.
        events: usize,
    },
}

impl Refusal {
    /// Events refused, for the metrics (1 when the body could not be read as events).
    pub fn events(&self) -> usize {
        match self {
            Refusal::InvalidEvents { total, .. } | Refusal::SchemaMismatch { total, .. } => *total,
            Refusal::NoContract { events, .. } | Refusal::NotStored { events, .. } => *events,
            Refusal::UnreadableDatum { datum, .. } => *datum,
            _ => 1,
        }
    }
}

/// Decompresses a `gzip` or `zstd` body, refusing to produce more than `limit` bytes. A body
/// that does not decompress is refused with how far decompression got.
pub fn decode(encoding: &str, body: Vec<u8>, limit: usize) -> Result<Vec<u8>, Refusal> {
    let broken = |error: std::io::Error, output: usize| Refusal::Undecodable {
        encoding: encoding.to_string(),
        size: body.len(),
        output,
        error,
    };
    let read_limited = |r: &mut dyn Read| -> Result<Vec<u8>, Refusal> {
        let mut out = Vec::new();
        r.take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| broken(e, out.len()))?;
        if out.len() > limit {
            return Err(Refusal::BodyTooLarge { limit });
        }
        Ok(out)
    };
    match encoding {
        "gzip" | "x-gzip" => read_limited(&mut flate2::read::GzDecoder::new(&body[..])),
        "zstd" => {
            let mut d = zstd::stream::read::Decoder::new(&body[..]).map_err(|e| broken(e, 0))?;
            read_limited(&mut d)
        }
        other => Err(Refusal::UnsupportedEncoding {
            encoding: other.to_string(),
        }),
    }
}

/// Binary Avro bodies: framed datums one after another.
pub fn is_avro(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    matches!(
        essence,
        "application/vnd.apache.avro+binary" | "avro/binary" | "application/avro"
    )
}

/// A decoded body's events for `repo`: binary Avro by its schema, anything else parsed and
/// then checked by the gatekeeper. All or nothing.
pub fn events(
    repo: &Repository,
    body: &[u8],
    content_type: &str,
    parser: Option<Parser>,
    max_event: usize,
    now: i64,
) -> Result<Vec<Event>, Refusal> {
    if is_avro(content_type) {
        return avro(repo, body, max_event, now);
    }
    let mut events = parse_with(
        body,
        content_type,
        parser,
        max_event,
        now,
        repo.line_parse(),
    )?;
    gatekeep(repo, &mut events)?;
    Ok(events)
}

/// Turns a body into events, or lists every bad line (or array element).
pub fn parse(
    body: &[u8],
    content_type: &str,
    parser: Option<Parser>,
    max_event: usize,
    now: i64,
) -> Result<Vec<Event>, Refusal> {
    parse_with(body, content_type, parser, max_event, now, Parser::parse)
}

/// [`parse`], each line parsed by `parse_line` ([`Parser::parse`] or
/// [`Parser::parse_for_bus`]).
fn parse_with(
    body: &[u8],
    content_type: &str,
    parser: Option<Parser>,
    max_event: usize,
    now: i64,
    parse_line: ParseLine,
) -> Result<Vec<Event>, Refusal> {
    let text = std::str::from_utf8(body).map_err(|e| Refusal::NotUtf8 {
        byte: e.valid_up_to(),
    })?;
    // Sized once: grown by doubling, the events of a 4 MiB body were moved about 16 times.
    let mut events = Vec::with_capacity(memchr::memchr_iter(b'\n', body).count() + 1);
    let mut bad = Vec::new();
    let parser = parser.or_else(|| {
        content_type
            .starts_with("text/plain")
            .then_some(Parser::None)
    });
    let document = match parser {
        Some(_) => None,
        None => match json_body::classify(text) {
            Ok(JsonBody::Document(values)) => Some(values),
            Ok(JsonBody::Lines) => None,
            Err(error) => {
                return Err(Refusal::InvalidJson {
                    line: error.line(),
                    column: error.column(),
                    error,
                })
            }
        },
    };
    // One element or line: too large refuses the body; a bad one is listed and reading goes on.
    let mut take = |number: usize, parser: Parser, text: &str| {
        if text.len() > max_event {
            return Err(Refusal::EventTooLarge {
                event: number,
                size: text.len(),
                limit: max_event,
            });
        }
        match parse_line(parser, text, now) {
            Ok(e) => events.push(e),
            Err(error) => bad.push(BadLine {
                line: number,
                error,
            }),
        }
        Ok(())
    };
    if let Some(elements) = document {
        // Each element's own text becomes its @rawstring, without re-serialising it.
        for (i, raw) in elements.into_iter().enumerate() {
            take(i + 1, Parser::Json, raw.get())?;
        }
    } else {
        let parser = parser.unwrap_or(Parser::Json);
        for (i, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if !line.trim().is_empty() {
                take(i + 1, parser, line)?;
            }
        }
    }
    if !bad.is_empty() {
        let total = bad.len() + events.len();
        return Err(Refusal::InvalidEvents { bad, total });
    }
    Ok(events)
}

/// All or nothing: every event must fit the repository's schema, or the refusal lists each
/// one that does not.
pub fn gatekeep(repo: &Repository, events: &mut [Event]) -> Result<(), Refusal> {
    let refused = repo.refused(events).map_err(|error| Refusal::NoContract {
        error,
        events: events.len(),
    })?;
    if refused.is_empty() {
        return Ok(());
    }
    Err(Refusal::SchemaMismatch {
        refused,
        total: events.len(),
        subject: repo
            .gate
            .as_ref()
            .map_or("", |g| g.binding().subject.as_str())
            .to_string(),
    })
}

/// Decodes a body of framed binary Avro datums into events (as JSON, resolved to the schema
/// the repository reads with). The first datum that does not decode refuses the whole body:
/// where the next one would start is unknown.
pub fn avro(
    repo: &Repository,
    body: &[u8],
    max_event: usize,
    now: i64,
) -> Result<Vec<Event>, Refusal> {
    let Some(gate) = &repo.gate else {
        return Err(Refusal::NoSchema {
            repository: repo.name.clone(),
        });
    };
    let contract = gate
        .contract()
        .map_err(|error| Refusal::NoContract { error, events: 1 })?;
    let mut events = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let datum = events.len() + 1;
        let refuse = |reason: String| Refusal::UnreadableDatum {
            datum,
            byte: at,
            reason,
        };
        let (value, used) = contract
            .decode(&body[at..])
            .map_err(|r| refuse(r.to_string()))?;
        let text = value.to_string();
        if text.len() > max_event {
            return Err(Refusal::EventTooLarge {
                event: datum,
                size: text.len(),
                limit: max_event,
            });
        }
        events.push(
            Parser::Json
                .parse(&text, now)
                .map_err(|e| refuse(e.to_string()))?,
        );
        at += used;
    }
    Ok(events)
}
