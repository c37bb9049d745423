//! Line parsers: turn one line of text into an event's fields.
//!
//! Each parser reports a bad line as a [`ParseError`] with the 1-based column, the field it was
//! reading and why, so a door can answer "line 17, column 23, field `status`: expected a 3-digit
//! status code". None of them panics on any input (property-tested).

mod accesslog;
mod cursor;
mod json;
mod kv;
mod statsd;
mod syslog;

use std::collections::BTreeMap;

use crate::event::Event;
use crate::fields::FlatFields;
use crate::time;
use crate::value::{Value, ValueRef};

/// Why a line could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}{}: {reason}", field.as_ref().map(|f| format!(", field {f}")).unwrap_or_default())]
pub struct ParseError {
    /// 1-based byte column where the problem starts.
    pub column: usize,
    /// The field being read, if any.
    pub field: Option<String>,
    /// What was expected or wrong.
    pub reason: String,
}

/// A named parser for raw lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parser {
    /// One JSON object per line; nested objects flattened; `@timestamp`, `@id` and `#tag` keys
    /// are taken as the event's time, id and tags.
    Json,
    /// `key=value` pairs anywhere in the line; values may be double- or single-quoted.
    Kv,
    /// Apache/Nginx common or combined log format.
    Accesslog,
    /// Syslog, RFC 5424 or RFC 3164.
    Syslog,
    /// A StatsD metric line.
    Statsd,
    /// No fields: the line is kept as `@rawstring` only.
    None,
}

impl std::str::FromStr for Parser {
    type Err = String;

    fn from_str(s: &str) -> Result<Parser, String> {
        match s {
            "json" => Ok(Parser::Json),
            "kv" => Ok(Parser::Kv),
            "accesslog" => Ok(Parser::Accesslog),
            "syslog" => Ok(Parser::Syslog),
            "statsd" => Ok(Parser::Statsd),
            "none" => Ok(Parser::None),
            other => Err(format!(
                "unknown parser {other:?}; expected json, kv, accesslog, syslog, statsd or none"
            )),
        }
    }
}

impl Parser {
    /// A small stable number for encodings (1..=6; 0 means "no parser" there).
    pub fn code(self) -> u8 {
        match self {
            Parser::Json => 1,
            Parser::Kv => 2,
            Parser::Accesslog => 3,
            Parser::Syslog => 4,
            Parser::Statsd => 5,
            Parser::None => 6,
        }
    }

    /// The parser with [`Parser::code`] `code`.
    pub fn from_code(code: u8) -> Option<Parser> {
        Some(match code {
            1 => Parser::Json,
            2 => Parser::Kv,
            3 => Parser::Accesslog,
            4 => Parser::Syslog,
            5 => Parser::Statsd,
            6 => Parser::None,
            _ => return None,
        })
    }

    /// The fields this parser makes from `raw` for an event that arrived at `arrived` (ns):
    /// how a store that kept only `raw` gives an event its fields back.
    pub fn fields_of(self, raw: &str, arrived: i64) -> Result<BTreeMap<String, Value>, ParseError> {
        // The fields of `parse`, without what only the event needs (a copy of the text, a new
        // id, the time read from the fields): the digest calls this for every parsed event.
        let mut event = Event::unnamed(arrived);
        self.parse_into(raw, &mut event, json::Fields::All)?;
        keep_sent_time_apart(&mut event.fields);
        Ok(event.fields)
    }

    /// [`Parser::fields_of`] into `out`, which keeps its memory from event to event: what a
    /// reader that derives the fields of every event it reads (the digest) calls. The JSON and
    /// access log parsers write into it directly; the others fill a map first.
    pub fn fields_into(
        self,
        raw: &str,
        arrived: i64,
        out: &mut FlatFields,
    ) -> Result<(), ParseError> {
        match self {
            Parser::Json => json::fields_into(raw, out)?,
            Parser::Accesslog => {
                out.clear();
                accesslog::fields_into(raw, out)?;
                out.finish();
            }
            Parser::None => out.clear(),
            Parser::Kv | Parser::Syslog | Parser::Statsd => {
                let fields = self.fields_of(raw, arrived)?;
                out.fill_from(&fields);
                return Ok(());
            }
        }
        keep_sent_time_apart_in(out);
        Ok(())
    }

    /// Parses `line`, which arrived at `now` (ns), into an event: `@rawstring` is the line,
    /// fields are extracted, and `@timestamp` is the event's own time if one is found, else
    /// `now`.
    pub fn parse(self, line: &str, now: i64) -> Result<Event, ParseError> {
        self.parse_building(line, now, json::Fields::All)
    }

    /// Parses `line` as [`Parser::parse`] does (the same lines are refused, with the same
    /// errors, and the event gets the same time, id, tags, raw text and parser) but returns it
    /// without fields: what a door needs to write a bus record, whose fields its readers derive
    /// again from the raw text ([`crate::codec::derive_fields`]). The JSON parser then builds no
    /// field but the time's, which saves an allocation or more per field; the others build
    /// them and drop them.
    pub fn parse_for_bus(self, line: &str, now: i64) -> Result<Event, ParseError> {
        if self == Parser::Accesslog {
            // A sink that keeps only the time finds what `time::detect` finds in the map,
            // without the map.
            let mut times = LastTimes::default();
            accesslog::fields_into(line, &mut times)?;
            let mut event = Event::new(now);
            if let Some(ts) = times.first() {
                event.timestamp = ts;
            }
            event.raw = Some(line.to_string());
            event.parsed_by = Some(self);
            return Ok(event);
        }
        if self == Parser::Json {
            if let Some(event) = plain_json_for_bus(line, now) {
                return Ok(event);
            }
        }
        let mut event = self.parse_building(line, now, json::Fields::TimeOnly)?;
        event.fields.clear();
        Ok(event)
    }

    /// [`Parser::parse`], the JSON parser building the fields `json_fields` says.
    fn parse_building(
        self,
        line: &str,
        now: i64,
        json_fields: json::Fields,
    ) -> Result<Event, ParseError> {
        let mut event = Event::new(now);
        self.parse_into(line, &mut event, json_fields)?;
        finish(&mut event, line.to_string());
        event.parsed_by = Some(self);
        Ok(event)
    }

    /// Runs this parser over `line` into `event`.
    fn parse_into(
        self,
        line: &str,
        event: &mut Event,
        json_fields: json::Fields,
    ) -> Result<(), ParseError> {
        match self {
            Parser::Json => json::parse(line, event, json_fields),
            Parser::Kv => kv::parse(line, event),
            Parser::Accesslog => accesslog::parse(line, event),
            Parser::Syslog => syslog::parse(line, event),
            Parser::Statsd => statsd::parse(line, event),
            Parser::None => Ok(()),
        }
    }
}

/// Where a client's `@timestamp` that is not a time is kept, so it never shadows the event's.
pub const UNPARSED_TIMESTAMP_FIELD: &str = "@timestamp.unparsed";

fn finish(event: &mut Event, raw: String) {
    if let Some((_, ts)) = time::detect(&event.fields) {
        event.timestamp = ts;
    }
    keep_sent_time_apart(&mut event.fields);
    event.raw = Some(raw);
}

/// The event's time is `@timestamp`: a client's field of that name is read into it, never kept
/// beside it as a second column of the same name (one that is not a time is kept apart).
fn keep_sent_time_apart(fields: &mut BTreeMap<String, Value>) {
    if let Some(sent) = fields.remove("@timestamp") {
        if time::parse_time_value(&sent).is_none() {
            fields.insert(UNPARSED_TIMESTAMP_FIELD.to_string(), sent);
        }
    }
}

/// [`Parser::parse_for_bus`] for a plain JSON line (see [`json::flat_object_into`]), which has
/// no `@id` and no tags: its time is the first of [`time::TIME_FIELDS`] that holds one, as
/// `time::detect` finds it in a map; `None` for any other line. A byte walk that costs a third
/// of serde_json's, which the door otherwise pays for every line.
fn plain_json_for_bus(line: &str, now: i64) -> Option<Event> {
    let mut times = LastTimes::default();
    if !json::flat_object_into(line, &mut times) {
        return None;
    }
    let mut event = Event::new(now);
    if let Some(ts) = times.first() {
        event.timestamp = ts;
    }
    event.raw = Some(line.to_string());
    event.parsed_by = Some(Parser::Json);
    Some(event)
}

/// A field sink that keeps, per name of [`time::TIME_FIELDS`], the time its last value holds
/// (a name given twice keeps its last value, as a map does): the time `time::detect` finds,
/// without keeping the fields.
#[derive(Default)]
struct LastTimes {
    /// Per rank in [`time::TIME_FIELDS`]: not given, or the time its last value reads as.
    by_rank: [Option<Option<i64>>; time::TIME_FIELDS.len()],
}

impl LastTimes {
    fn first(&self) -> Option<i64> {
        self.by_rank.iter().find_map(|t| t.flatten())
    }
}

impl crate::fields::FieldSink for LastTimes {
    fn put(&mut self, name: std::borrow::Cow<'_, str>, value: ValueRef<'_>) {
        if let Some(rank) = time::time_field_rank(&name) {
            self.by_rank[rank] = Some(time::parse_time_ref(value));
        }
    }
}

/// [`keep_sent_time_apart`] for [`FlatFields`].
fn keep_sent_time_apart_in(fields: &mut FlatFields) {
    let Some(sent) = fields.get("@timestamp") else {
        return;
    };
    let is_time = time::parse_time_ref(sent).is_some();
    let sent = (!is_time).then(|| Value::from(sent));
    fields.remove("@timestamp");
    if let Some(sent) = sent {
        fields.set(UNPARSED_TIMESTAMP_FIELD, (&sent).into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn client_timestamp_becomes_the_event_time_and_never_a_second_field() {
        let e = Parser::Json
            .parse(r#"{"@timestamp":"2026-12-01T10:00:00Z","a":1}"#, 5)
            .unwrap();
        assert_eq!(e.timestamp, 1_796_119_200_000_000_000);
        assert!(!e.fields.contains_key("@timestamp"), "{:?}", e.fields);
        assert_eq!(e.fields.get("a"), Some(&Value::Int(1)));
        let e = Parser::Kv
            .parse("@timestamp=2026-12-01T10:00:00Z a=1", 5)
            .unwrap();
        assert_eq!(e.timestamp, 1_796_119_200_000_000_000);
        assert!(!e.fields.contains_key("@timestamp"), "{:?}", e.fields);
        // Not a time: kept under another name, the event keeps its arrival time.
        let e = Parser::Json.parse(r#"{"@timestamp":"soon"}"#, 5).unwrap();
        assert_eq!(e.timestamp, 5);
        assert!(!e.fields.contains_key("@timestamp"));
        assert_eq!(
            e.fields.get(UNPARSED_TIMESTAMP_FIELD),
            Some(&Value::Str("soon".into()))
        );
    }

    /// `base` with the byte at `flip` (modulo its length) set to `byte`, cut to `cut` bytes;
    /// `None` if that is not UTF-8 any more.
    fn near_valid(base: String, flip: usize, byte: u8, cut: usize) -> Option<String> {
        let mut bytes = base.into_bytes();
        if !bytes.is_empty() {
            let i = flip % bytes.len();
            bytes[i] = byte;
        }
        bytes.truncate(cut.min(bytes.len()));
        String::from_utf8(bytes).ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn no_parser_panics_on_any_text(line in ".{0,200}") {
            for p in [Parser::Json, Parser::Kv, Parser::Accesslog, Parser::Syslog, Parser::Statsd, Parser::None] {
                if let Err(e) = p.parse(&line, 0) {
                    prop_assert!(e.column >= 1 && e.column <= line.len() + 1, "{e:?} for {line:?}");
                }
            }
        }

        #[test]
        fn no_parser_panics_on_near_valid_lines(
            base in prop_oneof![
                Just(r#"127.0.0.1 - frank [10/Oct/2026:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/5.0""#.to_string()),
                Just(r##"{"a":{"b":[1,2,{"c":"d"}]},"@timestamp":"2026-11-24T10:00:00Z","#host":"web-1"}"##.to_string()),
                Just(r#"level=info msg="hello world" user='bob' n=5"#.to_string()),
                Just(r#"<165>1 2026-11-24T10:00:00.003Z host app - ID47 [id@1 a="3" b="x\"y"] msg"#.to_string()),
                Just("<34>Nov 24 10:00:00 mymachine su[230]: 'su root' failed".to_string()),
                Just("http.requests:1|c|@0.1|#service:web,region:eu".to_string()),
            ],
            cut in 0usize..200,
            flip in 0usize..200,
            byte in 32u8..127,
        ) {
            let line = near_valid(base, flip, byte, cut).unwrap();
            for p in [Parser::Json, Parser::Kv, Parser::Accesslog, Parser::Syslog, Parser::Statsd] {
                // The store keeps only the raw line of a parsed event and asks the parser for
                // its fields again when reading: they must come out the same.
                if let Ok(e) = p.parse(&line, 1_700_000_000_000_000_000) {
                    prop_assert_eq!(e.parsed_by, Some(p));
                    let again = p.fields_of(e.raw.as_deref().unwrap(), e.ingest_timestamp).unwrap();
                    prop_assert_eq!(again, e.fields);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fields_derived_into_one_buffer_are_the_fields_a_map_gets(
            base in prop_oneof![
                Just(r##"{"@timestamp":"2026-11-24T10:00:00Z","#host":"web-1","a":{"b":[1,2.5,{"c":"d\u00e9"}]},"n":null,"t":true}"##.to_string()),
                Just(r##"{"time":1795500000,"@id":"req-7","msg":"x\"y","b":1,"b":"again","a.b":3,"a":{"b":4}}"##.to_string()),
                Just(r##"{"@timestamp":"soon","@timestamp.unparsed":1,"z":-1,"big":18446744073709551615}"##.to_string()),
                Just(r##"{"@timestamp":null,"@id":"6f1c4a4e-8d3b-4b8e-9a57-2c1d0e3f4a5b","x":""}"##.to_string()),
                Just(r##"{"@timestamp":1795500000.5,"@rawstring":"no","@ingesttimestamp":3,"ü":"ß"}"##.to_string()),
                Just(r#"127.0.0.1 - frank [10/Oct/2026:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/5.0""#.to_string()),
                Just(r#"::1 - - [01/Jan/1970:00:00:07 +0000] "-" 400 - "#.to_string()),
                Just(r#"level=info msg="hello world" user='bob' n=5 @timestamp=2026-11-24T10:00:00Z"#.to_string()),
                Just(r#"<165>1 2026-11-24T10:00:00.003Z host app - ID47 [id@1 a="3"] msg"#.to_string()),
                Just("http.requests:1|c|@0.1|#service:web,region:eu".to_string()),
            ],
            cut in 0usize..200,
            flip in 0usize..200,
            byte in prop_oneof![32u8..127, Just(b'\\'), Just(b'"'), Just(b'{')],
        ) {
            let Some(line) = near_valid(base, flip, byte, cut) else { return Ok(()) };
            // One buffer for every parser and line: nothing of one may stay in the next.
            let mut flat = FlatFields::default();
            for _ in 0..2 {
                for p in [Parser::Json, Parser::Kv, Parser::Accesslog, Parser::Syslog, Parser::Statsd, Parser::None] {
                    let map = p.fields_of(&line, 7);
                    let derived = p.fields_into(&line, 7, &mut flat).map(|()| flat.to_map());
                    prop_assert_eq!(derived, map, "{:?} on {:?}", p, line);
                }
            }
        }
    }

    /// What [`Parser::parse_for_bus`] must agree on with [`Parser::parse`]: all but the fields.
    fn for_bus(r: Result<Event, ParseError>) -> Result<Event, ParseError> {
        r.map(|mut e| {
            e.fields.clear();
            // A new id each parse, unless the client gave one.
            if !e.id_from_client {
                e.id = uuid::Uuid::nil();
            }
            e
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parsing_for_the_bus_is_parsing_without_the_fields(
            base in prop_oneof![
                Just(r##"{"@timestamp":"2026-11-24T10:00:00Z","#host":"web-1","a":{"b":[1,2.5,{"c":"d\u00e9"}]},"n":null,"t":true}"##.to_string()),
                Just(r##"{"time":1795500000,"@id":"req-7","msg":"x\"y","ts":"2026-11-24 10:00:00Z","list":[]}"##.to_string()),
                Just(r##"{"eventTime":{"x":1},"date":"24/Nov/2026:10:00:00 +0000","s":"\ud83d\ude00","big":18446744073709551615}"##.to_string()),
                Just(r#"127.0.0.1 - frank [10/Oct/2026:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/5.0""#.to_string()),
                Just(r#"::1 - - [not a time] "GET / HTTP/1.1" 200 - "-" "a \"quoted\" agent""#.to_string()),
                Just(r#"{"@timestamp":"2026-12-03T18:09:09.833Z","service":"orders","level":"INFO","latency_ms":4,"ok":true,"x":null}"#.to_string()),
                Just(r#"{"@timestamp":"soon","ts":1795500000,"time":"2026-11-24 10:00:00Z","ts":"later","n":-12}"#.to_string()),
                Just(r#"{"time":1795500000,"time":"later","ts":1795500001,"date":"01/Jan/1970:00:00:02 +0000"}"#.to_string()),
                Just(r#"10.0.0.1 - - [2026-11-24T10:00:00.5Z] "-" 404 12"#.to_string()),
                Just(r#"level=info msg="hello world" user='bob' n=5"#.to_string()),
            ],
            cut in 0usize..200,
            flip in 0usize..200,
            byte in prop_oneof![32u8..127, Just(b'\\'), Just(b'"'), Just(b'{')],
        ) {
            let Some(line) = near_valid(base, flip, byte, cut) else { return Ok(()) };
            for p in [Parser::Json, Parser::Kv, Parser::Accesslog, Parser::Syslog, Parser::Statsd, Parser::None] {
                let bus = for_bus(p.parse_for_bus(&line, 7));
                if let Ok(e) = &bus {
                    prop_assert!(e.fields.is_empty());
                }
                prop_assert_eq!(bus, for_bus(p.parse(&line, 7)), "{:?} on {:?}", p, line);
            }
        }
    }

    #[test]
    fn a_lone_surrogate_is_refused_for_the_bus_as_it_is_in_full() {
        let line = r#"{"a":"\ud800","time":5}"#;
        assert!(Parser::Json.parse(line, 0).is_err());
        assert_eq!(
            Parser::Json.parse_for_bus(line, 0).unwrap_err(),
            Parser::Json.parse(line, 0).unwrap_err()
        );
    }

    #[test]
    fn parser_codes_roundtrip() {
        for code in 0..=8 {
            if let Some(p) = Parser::from_code(code) {
                assert_eq!(p.code(), code);
            }
        }
        assert_eq!(Parser::from_code(0), None);
    }

    #[test]
    fn rawstring_and_arrival_time_are_kept() {
        let e = Parser::None.parse("just text", 42).unwrap();
        assert_eq!(e.raw.as_deref(), Some("just text"));
        assert_eq!((e.timestamp, e.ingest_timestamp), (42, 42));
        let e = Parser::Kv.parse("ts=1795500000 a=1", 42).unwrap();
        assert_eq!(e.timestamp, 1_795_500_000_000_000_000);
        assert_eq!(e.ingest_timestamp, 42);
    }
}
