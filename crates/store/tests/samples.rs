//! Segment files written by each format version stay readable: a small sample of each version
//! is committed in `tests/samples/` and read here. `EDDY_WRITE_SAMPLES=1 cargo test -p
//! eddy-store --test samples` writes the sample of the current version (do it once, when the
//! version changes, and commit the file).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use eddy_event::{Event, Parser, Value};
use eddy_store::segment::{SegmentInfo, SegmentWriter, VERSION};
use eddy_store::{BlockBuilder, Compression, SegmentFile};

fn sample_path(version: u16) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/samples/v{version}.seg"))
}

/// The sample's events: parsed JSON and access-log lines and an unparsed event, two blocks.
fn events() -> Vec<Vec<Event>> {
    let now = 1_795_000_000_000_000_000;
    let json: Vec<Event> = (0..20)
        .map(|n| {
            let mut e = Parser::Json
                .parse(
                    &format!(r#"{{"n":{n},"msg":"sample {n}","ok":true}}"#),
                    now + n,
                )
                .unwrap();
            e.tags = BTreeMap::from([("host".into(), "sample".into())]);
            e
        })
        .collect();
    let mut mixed = vec![Parser::Accesslog
        .parse(
            r#"10.1.2.3 - - [24/Nov/2026:10:00:00 +0000] "GET /v1 HTTP/1.1" 200 5 "-" "curl/8""#,
            now,
        )
        .unwrap()];
    let mut plain = Event::new(now);
    plain.fields.insert("x".into(), Value::Float(1.5));
    mixed.push(plain);
    vec![json, mixed]
}

#[test]
fn the_sample_of_every_version_loads() {
    if std::env::var_os("EDDY_WRITE_SAMPLES").is_some() {
        let path = sample_path(VERSION);
        let wip = path.with_extension("wip");
        let mut w = SegmentWriter::create(&wip).unwrap();
        for block in events() {
            let mut b = BlockBuilder::new();
            block.iter().for_each(|e| b.push(e));
            let (stored, summary, bloom) = b.finish(Compression::ZstdAuto, 10);
            w.append(&stored, summary, bloom).unwrap();
        }
        let info = SegmentInfo {
            id: 1,
            source: "#host=sample".into(),
            tags: BTreeMap::new(),
            partition: 0,
            first_offset: 0,
            last_offset: 21,
            min_time: 0,
            max_time: 0,
            count: 0,
            raw_bytes: 0,
            sealed_at: 0,
            replaces: vec![],
        };
        w.seal(info, &path).unwrap();
    }
    for version in 1..=VERSION {
        let seg = SegmentFile::open(&sample_path(version)).unwrap();
        assert!(
            seg.verify().is_empty(),
            "version {version}: {:?}",
            seg.verify()
        );
        assert_eq!(seg.footer().info.count, 22);
        let json = seg.events(0).unwrap();
        assert_eq!(json.len(), 20);
        assert_eq!(
            json[7].fields.get("msg"),
            Some(&Value::Str("sample 7".into()))
        );
        assert_eq!(
            json[7].raw.as_deref(),
            Some(r#"{"n":7,"msg":"sample 7","ok":true}"#)
        );
        assert_eq!(json[7].tags.get("host").map(String::as_str), Some("sample"));
        let mixed = seg.events(1).unwrap();
        assert_eq!(mixed[0].fields.get("status"), Some(&Value::Int(200)));
        assert_eq!(mixed[1].fields.get("x"), Some(&Value::Float(1.5)));
        assert!(seg.footer().blooms[1].may_contain("curl"));
    }
}
