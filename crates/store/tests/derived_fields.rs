//! A bus record holds a parsed event's raw text without its fields, and the block builder has
//! the parser derive them into a buffer it keeps: the blocks it writes must be those it wrote
//! when it was given each event's field map.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eddy_event::codec::{self, FieldsRef};
use eddy_event::{Event, Parser};
use eddy_store::{BlockBuilder, Compression};
use proptest::prelude::*;

/// The stored bytes, summary and bloom filter of a block of `events`, each added as `add` says.
fn block(events: &[Event], add: impl Fn(&mut BlockBuilder, &Event)) -> (Vec<u8>, String, Vec<u8>) {
    let mut b = BlockBuilder::new();
    for e in events {
        add(&mut b, e);
    }
    let (stored, summary, bloom) = b.finish(Compression::ZstdAuto, 10);
    (stored, format!("{summary:?}"), bloom.to_bytes())
}

/// The events as the digest gets them from the bus: decoded, their fields not derived.
fn as_read_from_the_bus(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .map(|e| {
            let record = codec::encode(e);
            let (read, fields) = codec::decode_lazily(&record).unwrap();
            assert!(fields.is_none(), "a parsed event's record holds no fields");
            read
        })
        .collect()
}

fn lines() -> impl Strategy<Value = (Parser, String)> {
    let word = "[a-zA-Z0-9_./-]{1,10}";
    prop_oneof![
        (word, 100u16..600, 0u32..100_000, word, "(-|https://x/[a-z]{0,6})").prop_map(
            |(url, status, bytes, agent, referer)| (
                Parser::Accesslog,
                format!(r#"10.0.0.{} - - [10/Oct/2026:13:55:36 -0700] "GET /{url} HTTP/1.1" {status} {bytes} "{referer}" "{agent}""#, status % 7)
            )
        ),
        // What shippers write: flat, no escapes, integers (the JSON parser's own walk).
        (word, -50i64..5000, "(INFO|WARN|ERROR)", "[a-z é]{0,20}", any::<bool>()).prop_map(
            |(service, ms, level, msg, ok)| (
                Parser::Json,
                format!(r#"{{"@timestamp":"2026-11-24T10:00:{:02}.{ms:03}Z","service":"{service}","level":"{level}","message":"{msg}","latency_ms":{ms},"ok":{ok},"parent":null,"n":{ms}}}"#, ms.rem_euclid(60))
            )
        ),
        (word, 0i64..5000, "(INFO|WARN|ERROR)", "[a-z ]{0,20}", any::<bool>()).prop_map(
            |(service, ms, level, msg, nested)| (
                Parser::Json,
                if nested {
                    format!(r##"{{"@timestamp":"2026-11-24T10:00:{:02}Z","service":"{service}","level":"{level}","http":{{"status":200,"path":["/a","{msg}"]}},"latency_ms":{ms},"#host":"h1"}}"##, ms % 60)
                } else {
                    format!(r#"{{"@timestamp":"2026-11-24T10:00:{:02}.5Z","service":"{service}","level":"{level}","message":"{msg}","latency_ms":{ms},"ratio":{}.25}}"#, ms % 60, ms % 3)
                }
            )
        ),
        // Plain JSON whose values repeat, equal keys, are empty or hold other values: the
        // search places some holes elsewhere than where the JSON walk read the values.
        ("[a-c]{1,2}", -3i64..20, "[a-c0-9 ]{0,4}", any::<bool>()).prop_map(|(a, n, s, late)| (
            Parser::Json,
            if late {
                format!(r#"{{"{a}":{n},"b":"{n}","c":"","d":"{s}","e":"{a}","@timestamp":"2026-11-24T10:00:{:02}Z","f":"{n} {a}"}}"#, n.rem_euclid(60))
            } else {
                format!(r#"{{"@timestamp":"2026-11-24T10:{:02}:00Z","a":"{a}","{a}":{n},"n":{n},"s":"{s}","t":"{s}"}}"#, n.rem_euclid(60))
            }
        )),
        (word, word, "[a-z ]{0,12}").prop_map(|(a, b, c)| (Parser::Kv, format!("level={a} user={b} msg={c:?} n=5"))),
        (word, word).prop_map(|(host, msg)| (
            Parser::Syslog,
            format!("<165>1 2026-11-24T10:00:00.003Z {host} app - ID47 [id@1 a=\"3\"] {msg}")
        )),
        (word, any::<u16>()).prop_map(|(name, v)| (Parser::Statsd, format!("{name}:{v}|c|#service:web"))),
        "[a-z ]{0,30}".prop_map(|l| (Parser::None, l)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn blocks_of_events_read_from_the_bus_equal_blocks_of_the_parsed_events(
        lines in proptest::collection::vec(lines(), 1..60),
    ) {
        let events: Vec<Event> = lines
            .iter()
            .enumerate()
            .filter_map(|(i, (parser, line))| parser.parse(line, 1_795_000_000_000_000_000 + i as i64).ok())
            .collect();
        let from_bus = as_read_from_the_bus(&events);
        let given = block(&events, |b, e| {
            b.push(e);
        });
        let derived = block(&from_bus, |b, e| {
            b.push_with(e, FieldsRef::Map(&e.fields));
        });
        prop_assert!(given == derived, "the blocks differ");
    }
}

#[test]
fn a_raw_text_its_parser_no_longer_reads_is_stored_without_fields_or_parser() {
    let mut e = Parser::Json.parse(r#"{"a":1,"b":"x"}"#, 5).unwrap();
    // As if the JSON parser of a later version refused what an earlier one read.
    e.raw = Some("not json".into());
    let record = codec::encode(&e);
    let (read, _) = codec::decode_lazily(&record).unwrap();
    let derived = block(std::slice::from_ref(&read), |b, e| {
        b.push_with(e, FieldsRef::Map(&e.fields));
    });
    // What the digest stored when the codec derived the fields before the block.
    let mut decoded = read.clone();
    codec::derive_fields(&mut decoded);
    assert_eq!(decoded.parsed_by, None);
    let given = block(std::slice::from_ref(&decoded), |b, e| {
        b.push(e);
    });
    assert!(given == derived, "the blocks differ");
}
