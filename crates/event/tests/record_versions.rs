//! Bus records written by earlier versions keep reading.

use eddy_event::{codec, Event, Parser, Value};

/// The events `samples/records-v2.bin` holds, made again: version 2 wrote every field.
fn written_by_version_2() -> Vec<Event> {
    let arrived = 1_795_500_000_000_000_000;
    let line = r#"127.0.0.1 - frank [10/Oct/2026:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/5.0""#;
    let mut access = Parser::Accesslog
        .parse(line, arrived)
        .expect("the sample line parses");
    access.id = uuid::Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001);
    access.tags.insert("host".into(), "web-1".into());
    let json = r##"{"@timestamp":"2026-12-01T10:00:00Z","a":{"b":[1,2.5,"x"]},"ok":true,"n":null,"#host":"api-2"}"##;
    let mut json = Parser::Json
        .parse(json, arrived)
        .expect("the sample JSON parses");
    json.id = uuid::Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0002);
    let mut plain = Event::new(arrived);
    plain.id = uuid::Uuid::from_u128(3);
    plain.raw = Some("plain".into());
    plain.fields.insert("x".into(), Value::Int(-5));
    vec![access, json, plain]
}

/// The records of a sample file: each a u32 length (little-endian) and the record.
fn records(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((len, rest)) = bytes.split_first_chunk::<4>() {
        let (record, rest) = rest.split_at(u32::from_le_bytes(*len) as usize);
        out.push(record);
        bytes = rest;
    }
    out
}

#[test]
fn version_2_records_with_fields_beside_the_raw_text_still_read() {
    let sample = include_bytes!("samples/records-v2.bin");
    let records = records(sample);
    assert!(records.iter().all(|r| r[0] == codec::VERSION_2));
    let read: Vec<Event> = records.iter().map(|r| codec::decode(r).unwrap()).collect();
    assert_eq!(read, written_by_version_2());
    // Read lazily, a version 2 parsed event hands its written fields on.
    let (event, fields) = codec::decode_lazily(records[0]).unwrap();
    assert_eq!(event.parsed_by, Some(Parser::Accesslog));
    assert_eq!(fields.unwrap().to_map().unwrap(), read[0].fields);
}

#[test]
fn the_current_version_writes_a_parsed_event_in_fewer_bytes_than_version_2() {
    let sample = include_bytes!("samples/records-v2.bin");
    for (old, event) in records(sample).into_iter().zip(written_by_version_2()) {
        let new = codec::encode(&event);
        assert_eq!(new[0], codec::VERSION);
        assert_eq!(codec::decode(&new).unwrap(), event);
        if event.parsed_by.is_some() {
            // Exactly the field map, a second copy of the raw text, is gone.
            let mut fields = Vec::new();
            codec::encode_fields(&event.fields, &mut fields);
            assert_eq!(new.len() + fields.len(), old.len());
        } else {
            assert_eq!(new[1..], old[1..]);
        }
    }
}
