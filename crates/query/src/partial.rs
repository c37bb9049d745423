//! A query's partial answer, to cross the wire: the collecting state a node filled from its
//! own store (not yet finished), with its warnings and what it read. A query node merges the
//! partial answers of several nodes with [`Partial::merge`], the same merge as between its
//! reading threads, and finishes the query once ([`Partial::into_answer`]): the stages after
//! the collecting one run only there, over the merged rows.
//!
//! The encoding uses the binary vocabulary of the bus's records ([`eddy_event::wire`]):
//! unsigned LEB128 varints for counts and lengths, little-endian fixed-width numbers,
//! length-prefixed UTF-8 text, and events as the bus encodes them ([`eddy_event::codec`]).
//!
//! ```text
//!  [u8; 4]   magic "EDQP"
//!  u8        format version: 1
//!  varint    warnings, then each as text
//!  u8        cancelled (0 or 1)
//!  varint ×10 progress: blocks done, total, ruled out; events scanned; bytes read;
//!            plan: segments, skipped; blocks, skipped; bytes to read
//!  u8        state kind, then its payload:
//!   0 groups     u8 overflowed · varint groups, each: varint key parts (u8 0 + zigzag varint
//!                int | u8 1 + text), then one aggregate state per output of the query
//!   1 histogram  a sketch of quantiles
//!   2 rows       u8 cut · varint rows, each: varint length + an event's bus encoding
//!  aggregate state: u8 kind, then
//!   0 count      varint
//!   1 distinct   varint hashes, each u64           2 distinct sketch: 4096 register bytes
//!   3 sum        f64 · varint values               4 min / 5 max: u8 present · f64
//!   6 quantiles  a sketch                          7 pick: u8 latest · u8 present ·
//!                                                    i64 time · [u8;16] id · value
//!  sketch: varint count · varint zeros · f64 min · f64 max · positive then negative
//!          buckets, each: zigzag varint base index · varint counts, each a varint
//!  value:  u8 0 null · 1 false · 2 true · 3 int i64 · 4 float f64 · 5 text
//! ```
//!
//! Decoding never trusts the bytes: every length is checked against what is left (so no
//! allocation is larger than the input), and the state must fit the query it answers (the
//! kind of collecting stage, the parts of each group key, one aggregate of the right kind per
//! output, sketches of a valid size): a state of another query is refused rather than merged
//! into a silently wrong answer. Trailing bytes are an error.

use eddy_event::wire::{put_str, put_varint, DecodeError, Reader};
use eddy_event::{codec, Value};
use eddy_store::ScanStats;

use crate::engine::{
    Agg, AggState, Collect, Collected, Grouping, KeptRows, Key, Picked, Program, State,
};
use crate::run::{self, Answer, Progress};
use crate::sketch::{Buckets, Distinct, Quantiles, HLL_BITS, MAX_INDEX};

/// The first bytes of an encoded partial answer.
pub const MAGIC: &[u8; 4] = b"EDQP";
/// The format version written (and the only one read).
pub const FORMAT_VERSION: u8 = 1;

/// A query's answer before it is finished: mergeable with others of the same query.
#[derive(Debug, Clone)]
pub struct Partial {
    /// The collecting stage's state.
    pub state: State,
    /// Problems that did not stop the query.
    pub warnings: Vec<String>,
    /// What was read and skipped.
    pub progress: Progress,
    /// Whether it was cancelled before reading everything.
    pub cancelled: bool,
}

/// Why bytes are not a partial answer of the query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartialError {
    /// The bytes are cut short or malformed.
    #[error("a partial answer that cannot be read: {0}")]
    Decode(#[from] DecodeError),
    /// They do not start with [`MAGIC`].
    #[error("not a partial answer (it does not start with {MAGIC:?})")]
    NotPartial,
    /// Another format version.
    #[error("a partial answer of format version {found}; this node reads version {FORMAT_VERSION} (run the same eddy version on every node)")]
    Version {
        /// The version found.
        found: u8,
    },
    /// A well-formed state that does not fit the query (another query's, or damaged).
    #[error("a partial answer that does not fit the query: {0}")]
    Mismatch(&'static str),
}

impl Partial {
    /// An empty partial answer of `program` (nothing read).
    pub fn empty(program: &Program) -> Partial {
        Partial {
            state: program.collect.state(),
            warnings: Vec::new(),
            progress: Progress::default(),
            cancelled: false,
        }
    }

    /// Adds `other`'s state, warnings and progress to this one.
    pub fn merge(&mut self, program: &Program, other: Partial) {
        program.collect.merge(&mut self.state, other.state);
        for w in other.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        add_progress(&mut self.progress, &other.progress);
        self.cancelled |= other.cancelled;
    }

    /// Finishes the query: the rest of it over the merged rows.
    pub fn into_answer(self, program: &Program) -> Answer {
        run::answer(
            program,
            self.state,
            self.warnings,
            self.progress,
            self.cancelled,
        )
    }

    /// The encoding (see the module's documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        put_varint(&mut out, self.warnings.len() as u64);
        for w in &self.warnings {
            put_str(&mut out, w);
        }
        out.push(u8::from(self.cancelled));
        let p = &self.progress;
        for n in [
            p.blocks_done,
            p.blocks_total,
            p.blocks_ruled_out,
            p.events_scanned,
            p.bytes_read,
            p.plan.segments as u64,
            p.plan.segments_skipped as u64,
            p.plan.blocks as u64,
            p.plan.blocks_skipped as u64,
            p.plan.bytes_to_read,
        ] {
            put_varint(&mut out, n);
        }
        encode_state(&self.state, &mut out);
        out
    }

    /// Decodes bytes written by [`Partial::encode`] for a query compiled as `program`.
    pub fn decode(bytes: &[u8], program: &Program) -> Result<Partial, PartialError> {
        if bytes.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
            return Err(PartialError::NotPartial);
        }
        let mut r = Reader::new(bytes);
        r.bytes(MAGIC.len(), "magic")?;
        let [version] = r.array::<1>("version")?;
        if version != FORMAT_VERSION {
            return Err(PartialError::Version { found: version });
        }
        let mut warnings = Vec::new();
        for _ in 0..r.len("warning count")? {
            warnings.push(r.string("warning")?);
        }
        let cancelled = flag(&mut r, "cancelled")?;
        let mut n = || r.varint("progress");
        let (blocks_done, blocks_total, blocks_ruled_out) = (n()?, n()?, n()?);
        let (events_scanned, bytes_read) = (n()?, n()?);
        let (segments, segments_skipped, blocks, blocks_skipped) = (n()?, n()?, n()?, n()?);
        let bytes_to_read = n()?;
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let progress = Progress {
            blocks_done,
            blocks_total,
            blocks_ruled_out,
            events_scanned,
            bytes_read,
            plan: ScanStats {
                segments: size(segments),
                segments_skipped: size(segments_skipped),
                blocks: size(blocks),
                blocks_skipped: size(blocks_skipped),
                bytes_to_read,
                warnings: Vec::new(),
            },
        };
        let state = decode_state(&mut r, &program.collect)?;
        if !r.at_end() {
            return Err(at(&r, "trailing bytes after the state").into());
        }
        Ok(Partial {
            state,
            warnings,
            progress,
            cancelled,
        })
    }
}

/// Adds `b`'s counts to `a`'s.
fn add_progress(a: &mut Progress, b: &Progress) {
    a.blocks_done = a.blocks_done.saturating_add(b.blocks_done);
    a.blocks_total = a.blocks_total.saturating_add(b.blocks_total);
    a.blocks_ruled_out = a.blocks_ruled_out.saturating_add(b.blocks_ruled_out);
    a.events_scanned = a.events_scanned.saturating_add(b.events_scanned);
    a.bytes_read = a.bytes_read.saturating_add(b.bytes_read);
    let (pa, pb) = (&mut a.plan, &b.plan);
    pa.segments = pa.segments.saturating_add(pb.segments);
    pa.segments_skipped = pa.segments_skipped.saturating_add(pb.segments_skipped);
    pa.blocks = pa.blocks.saturating_add(pb.blocks);
    pa.blocks_skipped = pa.blocks_skipped.saturating_add(pb.blocks_skipped);
    pa.bytes_to_read = pa.bytes_to_read.saturating_add(pb.bytes_to_read);
    pa.warnings.extend(pb.warnings.iter().cloned());
}

/// An error at the reader's position.
fn at(r: &Reader<'_>, reason: &'static str) -> DecodeError {
    DecodeError {
        position: r.pos,
        reason,
    }
}

fn flag(r: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match r.array::<1>(what)? {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => r.fail("a flag that is neither 0 nor 1"),
    }
}

fn put_f64(out: &mut Vec<u8>, x: f64) {
    out.extend_from_slice(&x.to_le_bytes());
}

fn read_f64(r: &mut Reader<'_>, what: &'static str) -> Result<f64, DecodeError> {
    r.array::<8>(what).map(f64::from_le_bytes)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn encode_state(state: &State, out: &mut Vec<u8>) {
    match &state.0 {
        Collected::Groups { groups, overflowed } => {
            out.push(0);
            out.push(u8::from(*overflowed));
            put_varint(out, groups.len() as u64);
            for (key, states) in groups {
                put_varint(out, key.len() as u64);
                for part in key {
                    match part {
                        Key::Int(i) => {
                            out.push(0);
                            put_varint(out, zigzag(*i));
                        }
                        Key::Text(t) => {
                            out.push(1);
                            put_str(out, t);
                        }
                    }
                }
                for s in states {
                    encode_agg(s, out);
                }
            }
        }
        Collected::Values(q) => {
            out.push(1);
            encode_quantiles(q, out);
        }
        Collected::Rows(kept) => {
            out.push(2);
            out.push(u8::from(kept.cut));
            put_varint(out, kept.rows.len() as u64);
            let mut event = Vec::new();
            for e in &kept.rows {
                event.clear();
                codec::encode_into(e, &mut event);
                put_varint(out, event.len() as u64);
                out.extend_from_slice(&event);
            }
        }
    }
}

fn decode_state(r: &mut Reader<'_>, collect: &Collect) -> Result<State, PartialError> {
    let [kind] = r.array::<1>("state kind")?;
    let collected = match (kind, collect) {
        (
            0,
            Collect::Aggregate {
                grouping, outputs, ..
            },
        ) => {
            let overflowed = flag(r, "overflowed")?;
            let parts = match grouping {
                Grouping::All => 0,
                Grouping::Fields(fields) => fields.len(),
                Grouping::Time { series, .. } => 1 + usize::from(series.is_some()),
            };
            let count = r.len("group count")?;
            let mut groups = std::collections::HashMap::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                if r.len("key length")? != parts {
                    return Err(PartialError::Mismatch(
                        "a group key has another number of parts than the query groups by",
                    ));
                }
                let mut key = Vec::with_capacity(parts);
                for _ in 0..parts {
                    key.push(match r.array::<1>("key part")? {
                        [0] => Key::Int(unzigzag(r.varint("key number")?)),
                        [1] => Key::Text(r.string("key text")?),
                        _ => return Err(at(r, "unknown key kind").into()),
                    });
                }
                let states = outputs
                    .iter()
                    .map(|o| decode_agg(r, &o.agg))
                    .collect::<Result<Vec<_>, _>>()?;
                groups.insert(key, states);
            }
            Collected::Groups { groups, overflowed }
        }
        (1, Collect::Histogram { .. }) => Collected::Values(Box::new(decode_quantiles(r)?)),
        (2, Collect::Rows { .. }) => {
            let cut = flag(r, "cut")?;
            let mut kept = KeptRows {
                cut,
                ..KeptRows::default()
            };
            for _ in 0..r.len("row count")? {
                let n = r.len("row length")?;
                let at = r.pos;
                let bytes = r.bytes(n, "row")?;
                let event = codec::decode(bytes).map_err(|e| DecodeError {
                    position: at + e.position,
                    reason: e.reason,
                })?;
                kept.push(event);
            }
            Collected::Rows(kept)
        }
        (0..=2, _) => {
            return Err(PartialError::Mismatch(
                "the state is of another kind of stage than the query collects with",
            ))
        }
        _ => return Err(at(r, "unknown state kind").into()),
    };
    Ok(State(collected))
}

fn encode_agg(s: &AggState, out: &mut Vec<u8>) {
    match s {
        AggState::Count(n) => {
            out.push(0);
            put_varint(out, *n);
        }
        AggState::Distinct(d) => match d.as_ref() {
            Distinct::Exact(set) => {
                out.push(1);
                put_varint(out, set.len() as u64);
                for h in set {
                    out.extend_from_slice(&h.to_le_bytes());
                }
            }
            Distinct::Sketch(registers) => {
                out.push(2);
                put_varint(out, registers.len() as u64);
                out.extend_from_slice(registers);
            }
        },
        AggState::Sum { sum, n } => {
            out.push(3);
            put_f64(out, *sum);
            put_varint(out, *n);
        }
        AggState::Min(m) | AggState::Max(m) => {
            out.push(if matches!(s, AggState::Min(_)) { 4 } else { 5 });
            match m {
                None => out.push(0),
                Some(x) => {
                    out.push(1);
                    put_f64(out, *x);
                }
            }
        }
        AggState::Quantiles(q) => {
            out.push(6);
            encode_quantiles(q, out);
        }
        AggState::Pick { latest, picked } => {
            out.push(7);
            out.push(u8::from(*latest));
            match picked {
                None => out.push(0),
                Some(p) => {
                    out.push(1);
                    out.extend_from_slice(&p.timestamp.to_le_bytes());
                    out.extend_from_slice(&p.id.to_le_bytes());
                    encode_value(&p.value, out);
                }
            }
        }
    }
}

/// The state of an aggregate `agg`, which must be of its kind.
fn decode_agg(r: &mut Reader<'_>, agg: &Agg) -> Result<AggState, PartialError> {
    let [kind] = r.array::<1>("aggregate kind")?;
    let empty = agg.state();
    let mismatch = || {
        Err(PartialError::Mismatch(
            "an aggregate state is of another kind than the query's aggregate",
        ))
    };
    let state = match (kind, &empty) {
        (0, AggState::Count(_)) => AggState::Count(r.varint("count")?),
        (1, AggState::Distinct(_)) => {
            let n = r.len("distinct count")?;
            let mut set = std::collections::HashSet::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                set.insert(u64::from_le_bytes(r.array::<8>("distinct hash")?));
            }
            AggState::Distinct(Box::new(Distinct::Exact(set)))
        }
        (2, AggState::Distinct(_)) => {
            let n = r.len("registers")?;
            if n != 1 << HLL_BITS {
                return Err(PartialError::Mismatch(
                    "a distinct-count sketch of another size",
                ));
            }
            let registers = r.bytes(n, "registers")?.to_vec();
            AggState::Distinct(Box::new(Distinct::Sketch(registers)))
        }
        (3, AggState::Sum { .. }) => AggState::Sum {
            sum: read_f64(r, "sum")?,
            n: r.varint("values summed")?,
        },
        (4, AggState::Min(_)) => AggState::Min(optional_f64(r)?),
        (5, AggState::Max(_)) => AggState::Max(optional_f64(r)?),
        (6, AggState::Quantiles(_)) => AggState::Quantiles(Box::new(decode_quantiles(r)?)),
        (7, AggState::Pick { latest, .. }) => {
            if flag(r, "latest")? != *latest {
                return Err(PartialError::Mismatch("first() and last() states swapped"));
            }
            let picked = match flag(r, "picked")? {
                false => None,
                true => Some(Picked {
                    timestamp: i64::from_le_bytes(r.array::<8>("time")?),
                    id: u128::from_le_bytes(r.array::<16>("id")?),
                    value: decode_value(r)?,
                }),
            };
            AggState::Pick {
                latest: *latest,
                picked,
            }
        }
        (0..=7, _) => return mismatch(),
        _ => return Err(at(r, "unknown aggregate kind").into()),
    };
    Ok(state)
}

fn optional_f64(r: &mut Reader<'_>) -> Result<Option<f64>, DecodeError> {
    match flag(r, "present")? {
        false => Ok(None),
        true => read_f64(r, "extreme").map(Some),
    }
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Int(i) => {
            out.push(3);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(x) => {
            out.push(4);
            put_f64(out, *x);
        }
        Value::Str(t) => {
            out.push(5);
            put_str(out, t);
        }
    }
}

fn decode_value(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    Ok(match r.array::<1>("value kind")? {
        [0] => Value::Null,
        [1] => Value::Bool(false),
        [2] => Value::Bool(true),
        [3] => Value::Int(i64::from_le_bytes(r.array::<8>("integer")?)),
        [4] => Value::Float(read_f64(r, "float")?),
        [5] => Value::Str(r.string("text")?),
        _ => return r.fail("unknown value kind"),
    })
}

fn encode_quantiles(q: &Quantiles, out: &mut Vec<u8>) {
    put_varint(out, q.count);
    put_varint(out, q.zeros);
    put_f64(out, q.min);
    put_f64(out, q.max);
    for side in [&q.positive, &q.negative] {
        put_varint(out, zigzag(i64::from(side.base)));
        put_varint(out, side.counts.len() as u64);
        for &n in &side.counts {
            put_varint(out, n);
        }
    }
}

fn decode_quantiles(r: &mut Reader<'_>) -> Result<Quantiles, PartialError> {
    let count = r.varint("values counted")?;
    let zeros = r.varint("zeros")?;
    let (min, max) = (read_f64(r, "minimum")?, read_f64(r, "maximum")?);
    let mut sides = [Buckets::default(), Buckets::default()];
    let mut total = zeros;
    for side in &mut sides {
        let base = unzigzag(r.varint("bucket base")?);
        let len = r.len("buckets")?;
        let last = base.saturating_add(len as i64);
        if len > 0 && (base < -i64::from(MAX_INDEX) || last > i64::from(MAX_INDEX)) {
            return Err(PartialError::Mismatch(
                "a quantile sketch's buckets out of range",
            ));
        }
        side.base = i32::try_from(base).unwrap_or_default();
        side.counts.reserve(len);
        for _ in 0..len {
            let n = r.varint("bucket count")?;
            total = total.checked_add(n).ok_or(PartialError::Mismatch(
                "a quantile sketch whose counts overflow",
            ))?;
            side.counts.push(n);
        }
    }
    if total != count {
        return Err(PartialError::Mismatch(
            "a quantile sketch whose buckets do not add up to its count",
        ));
    }
    if count > 0 && !(min.is_finite() && max.is_finite() && min <= max) {
        return Err(PartialError::Mismatch(
            "a quantile sketch with an invalid range",
        ));
    }
    let [positive, negative] = sides;
    Ok(Quantiles {
        positive,
        negative,
        zeros,
        count,
        min,
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{prepare, run_events};
    use eddy_event::Event;

    fn events() -> Vec<Event> {
        (0..500i64)
            .map(|i| {
                let mut e = Event::new(1_000_000_000 * i);
                e.raw = Some(format!("line {i}"));
                e.fields
                    .insert("host".into(), Value::Str(format!("h{}", i % 7)));
                e.fields.insert("ms".into(), Value::Int((i * 37) % 1000));
                e.fields
                    .insert("ratio".into(), Value::Float(i as f64 / 3.0 - 50.0));
                e
            })
            .collect()
    }

    /// The answer of `query` over all events, and that of the partial answers of three
    /// shares, encoded, decoded and merged.
    fn both(query: &str) -> (Answer, Answer) {
        let p = prepare(query, 50).unwrap();
        let program = &p.program;
        let all = events();
        let (reference, _, _) = run_events(program, all.clone());
        let mut whole = program.collect.state();
        for e in all.clone() {
            program.feed(&mut whole, e);
        }
        let single = Partial {
            state: whole,
            ..Partial::empty(program)
        }
        .into_answer(program);
        let mut merged = Partial::empty(program);
        for share in 0..3 {
            let mut state = program.collect.state();
            for e in all.iter().skip(share).step_by(3) {
                program.feed(&mut state, e.clone());
            }
            let partial = Partial {
                state,
                ..Partial::empty(program)
            };
            let bytes = partial.encode();
            merged.merge(program, Partial::decode(&bytes, program).unwrap());
        }
        let merged = merged.into_answer(program);
        assert_eq!(single.rows.len(), reference.len(), "{query}");
        (single, merged)
    }

    #[test]
    fn merged_partials_of_shares_equal_the_answer_over_all_events() {
        for query in [
            "count()",
            "groupBy(host, function=[count(), sum(ms), avg(ms), min(ratio), max(ratio)])",
            "groupBy(host, function=[countDistinct(ms), percentile(ms, percentiles=[50, 99])])",
            "groupBy(host, function=[last(ms), first(ms), boxplot(ratio)])",
            "timechart(span=1m, function=count())",
            "timechart(span=1m, series=host, function=count())",
            "bucket(span=1m, field=host, function=max(ms))",
            "histogram(ms, buckets=10)",
            "top(host)",
            "sort(ms, limit=7)",
            "head(5)",
            "tail(5)",
            "ms > 900",
            "table([host, ms], limit=20)",
            "groupBy(host) | sort(_count, order=asc) | head(3)",
        ] {
            let (single, merged) = both(query);
            assert_eq!(single.columns, merged.columns, "{query}");
            assert_eq!(single.rows, merged.rows, "{query}");
        }
    }

    #[test]
    fn a_state_of_another_query_is_refused_not_merged() {
        let count = prepare("count()", 10).unwrap().program;
        let sum = prepare("sum(ms)", 10).unwrap().program;
        let by_host = prepare("groupBy(host)", 10).unwrap().program;
        let events = prepare("*", 10).unwrap().program;
        let mut state = count.collect.state();
        count.collect.add_count(&mut state, 3);
        let bytes = Partial {
            state,
            ..Partial::empty(&count)
        }
        .encode();
        assert!(Partial::decode(&bytes, &count).is_ok());
        for other in [&sum, &by_host, &events] {
            assert!(matches!(
                Partial::decode(&bytes, other),
                Err(PartialError::Mismatch(_))
            ));
        }
        let mut newer = bytes.clone();
        newer[4] = FORMAT_VERSION + 1;
        assert_eq!(
            Partial::decode(&newer, &count).unwrap_err(),
            PartialError::Version {
                found: FORMAT_VERSION + 1
            }
        );
        assert_eq!(
            Partial::decode(b"{\"json\": 1}", &count).unwrap_err(),
            PartialError::NotPartial
        );
    }
}
