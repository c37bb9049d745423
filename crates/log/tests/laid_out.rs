//! Batches laid out above the log (attribute LAID_OUT): written, read as records through a
//! registered layout, read whole, damaged, torn and recovered.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_log::{
    register_layout, Bus, EncodedBatch, Error, LaidOutBatch, LaidOutRecord, Log, PartitionChoice,
    Polled, Record, RecordLayout, StoredRecord, Topic, TopicConfig,
};

/// The toy layout every test reads through.
const TOY: u8 = 0xEE;
/// A toy layout that counts its calls, registered for one test only.
const COUNTED: u8 = 0xED;
/// Never registered in this process.
const UNKNOWN: u8 = 0xAB;

/// Payload: the id byte, then per record i64 timestamp, u32 key length + 1 (0: no key), key,
/// u32 value length, value; all little-endian.
struct Toy {
    calls: AtomicUsize,
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err(format!("{n} bytes wanted, {} left", buf.len()));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

impl RecordLayout for Toy {
    fn records(&self, payload: &Bytes, count: u32) -> Result<Vec<LaidOutRecord>, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut buf = &payload[1..];
        let mut out = Vec::new();
        while !buf.is_empty() {
            let ts = i64::from_le_bytes(take(&mut buf, 8)?.try_into().unwrap());
            let klen = u32::from_le_bytes(take(&mut buf, 4)?.try_into().unwrap()) as usize;
            let key = match klen {
                0 => None,
                n => Some(Bytes::copy_from_slice(take(&mut buf, n - 1)?)),
            };
            let vlen = u32::from_le_bytes(take(&mut buf, 4)?.try_into().unwrap()) as usize;
            let value = Bytes::copy_from_slice(take(&mut buf, vlen)?);
            out.push(LaidOutRecord {
                timestamp: ts,
                key,
                value,
            });
        }
        if out.len() != count as usize {
            return Err(format!("{} records, {count} expected", out.len()));
        }
        Ok(out)
    }
}

static COUNTED_LAYOUT: std::sync::OnceLock<Arc<Toy>> = std::sync::OnceLock::new();

fn register() -> Arc<Toy> {
    register_layout(
        TOY,
        Arc::new(Toy {
            calls: AtomicUsize::new(0),
        }),
    );
    let counted = COUNTED_LAYOUT
        .get_or_init(|| {
            Arc::new(Toy {
                calls: AtomicUsize::new(0),
            })
        })
        .clone();
    register_layout(COUNTED, counted.clone());
    counted
}

/// `n` records laid out by `id`, timestamps from `ts`, and the records they stand for.
fn toy(id: u8, n: u32, ts: i64, tag: &str) -> (EncodedBatch, Vec<LaidOutRecord>, Vec<u8>) {
    let records: Vec<LaidOutRecord> = (0..n)
        .map(|i| LaidOutRecord {
            timestamp: ts + i64::from(i) * 10 - i64::from(i % 2) * 15,
            key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
            value: Bytes::from(format!("{tag} event {i}")),
        })
        .collect();
    let mut payload = vec![id];
    for r in &records {
        payload.extend_from_slice(&r.timestamp.to_le_bytes());
        match &r.key {
            None => payload.extend_from_slice(&0u32.to_le_bytes()),
            Some(k) => {
                payload.extend_from_slice(&(k.len() as u32 + 1).to_le_bytes());
                payload.extend_from_slice(k);
            }
        }
        payload.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        payload.extend_from_slice(&r.value);
    }
    let max = records.iter().map(|r| r.timestamp).max().unwrap();
    let batch = EncodedBatch::laid_out(payload.clone(), n, records[0].timestamp, max);
    (batch, records, payload)
}

fn rows(topic: &Topic, partition: u32, n: u64, ts: i64) {
    let records = (0..n)
        .map(|i| Record::new(format!("row {i}")).with_timestamp(ts + i as i64))
        .collect();
    topic
        .produce(records, PartitionChoice::Explicit(partition))
        .unwrap();
}

fn read_all(reader: &mut dyn eddy_log::BusReader) -> Result<Vec<StoredRecord>, Error> {
    let mut out = Vec::new();
    loop {
        let got = reader.poll(Duration::ZERO)?;
        if got.is_empty() {
            return Ok(out);
        }
        out.extend(got);
    }
}

fn poll_all_laid_out(reader: &mut dyn eddy_log::BusReader) -> Vec<Polled> {
    let mut out = Vec::new();
    loop {
        let got = reader.poll_laid_out(Duration::ZERO).unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

fn segment_file(dir: &Path, topic: &str) -> PathBuf {
    dir.join("topics")
        .join(topic)
        .join("0")
        .join(format!("{:020}.log", 0))
}

/// Rows 0..3, a toy batch of 5 (offsets 3..8), rows 8..10, in partition 0 of `name`.
fn rows_laid_out_rows(log: &Log, name: &str, id: u8) -> (Arc<Topic>, Vec<LaidOutRecord>, Vec<u8>) {
    let topic = log.create_topic(name, TopicConfig::default()).unwrap();
    rows(&topic, 0, 3, 1_000);
    let (batch, records, payload) = toy(id, 5, 2_000, name);
    let acks = log.produce_laid_out(name, vec![(0, batch)]).unwrap();
    assert_eq!((acks[0].base_offset, acks[0].last_offset), (3, 7));
    rows(&topic, 0, 2, 3_000);
    (topic, records, payload)
}

#[test]
fn poll_reads_laid_out_records_with_dense_offsets_keys_and_timestamps() {
    register();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let (_topic, records, _) = rows_laid_out_rows(&log, "t", TOY);
    let got = read_all(&mut *log.reader("t", 0, 0).unwrap()).unwrap();
    let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    for (got, want) in got[3..8].iter().zip(&records) {
        assert_eq!(got.timestamp, want.timestamp);
        assert_eq!(got.key, want.key);
        assert_eq!(got.value, want.value);
        assert!(got.headers.is_empty());
    }
    assert_eq!(got[2].value, Bytes::from("row 2"));
    assert_eq!(got[8].value, Bytes::from("row 0"));
}

#[test]
fn poll_laid_out_gives_the_batch_whole_once_without_calling_the_layout() {
    let counted = register();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let (_topic, records, payload) = rows_laid_out_rows(&log, "t", COUNTED);
    let before = counted.calls.load(Ordering::Relaxed);
    let mut reader = log.reader("t", 0, 0).unwrap();
    let polled = poll_all_laid_out(&mut *reader);
    assert_eq!(
        counted.calls.load(Ordering::Relaxed),
        before,
        "layout called"
    );
    assert_eq!(polled.len(), 3, "{polled:?}");
    let Polled::Records(first) = &polled[0] else {
        panic!("{polled:?}")
    };
    assert_eq!(
        first.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(
        polled[1],
        Polled::LaidOut(LaidOutBatch {
            base_offset: 3,
            record_count: 5,
            first_timestamp: records[0].timestamp,
            max_timestamp: records.iter().map(|r| r.timestamp).max().unwrap(),
            payload: Bytes::from(payload),
        })
    );
    let Polled::Records(last) = &polled[2] else {
        panic!("{polled:?}")
    };
    assert_eq!(last.iter().map(|r| r.offset).collect::<Vec<_>>(), [8, 9]);
    assert_eq!(reader.position(), 10);
    // Read as records, the same batch goes through the layout.
    read_all(&mut *log.reader("t", 0, 0).unwrap()).unwrap();
    assert_eq!(counted.calls.load(Ordering::Relaxed), before + 1);
}

#[test]
fn a_reader_inside_a_laid_out_batch_gets_the_remainder_as_records() {
    register();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let (_topic, records, _) = rows_laid_out_rows(&log, "t", TOY);
    let mut reader = log.reader("t", 0, 0).unwrap();
    reader.seek(5).unwrap();
    let polled = poll_all_laid_out(&mut *reader);
    // The remainder and the rows after it, consecutive records, in one group.
    assert_eq!(polled.len(), 1, "{polled:?}");
    let Polled::Records(got) = &polled[0] else {
        panic!("{polled:?}")
    };
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [5, 6, 7, 8, 9]
    );
    assert_eq!(got[0].value, records[2].value);
    assert_eq!(got[2].timestamp, records[4].timestamp);
    // `poll` from there too.
    let got = read_all(&mut *log.reader("t", 0, 6).unwrap()).unwrap();
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [6, 7, 8, 9]
    );
}

#[test]
fn an_unregistered_layout_is_a_clear_error_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let (topic, _, _) = rows_laid_out_rows(&log, "t", UNKNOWN);
    let mut reader = log.reader("t", 0, 0).unwrap();
    // The rows before it come first.
    assert_eq!(reader.poll(Duration::ZERO).unwrap().len(), 3);
    let err = reader.poll(Duration::ZERO).unwrap_err();
    match &err {
        Error::UnknownLayout {
            path,
            position,
            layout,
        } => {
            assert_eq!(*layout, UNKNOWN);
            assert_eq!(path, &segment_file(dir.path(), "t"));
            assert!(*position > 0);
        }
        other => panic!("expected UnknownLayout, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("laid out by layout 171 cannot be read by this process"),
        "{message}"
    );
    assert!(message.contains("not damaged"), "{message}");
    // A damage-skipping reader does not drop it as damage.
    let mut skipping = log.reader_skipping_damage("t", 0, 3).unwrap();
    assert!(matches!(
        skipping.poll(Duration::ZERO),
        Err(Error::UnknownLayout { .. })
    ));
    assert_eq!(skipping.skipped(), 0);
    // Whole, it reads without the layout; verify does not call it damage.
    let polled = poll_all_laid_out(&mut *log.reader("t", 0, 3).unwrap());
    assert!(matches!(&polled[0], Polled::LaidOut(b) if b.base_offset == 3));
    assert!(topic.partition(0).unwrap().verify().unwrap().is_empty());
}

#[test]
fn a_flipped_payload_byte_is_damage_named_and_skipped() {
    register();
    let dir = tempfile::tempdir().unwrap();
    let position = {
        let log = Log::open(dir.path()).unwrap();
        rows_laid_out_rows(&log, "t", TOY);
        // The laid-out batch starts where the first row batch ends.
        let file = std::fs::read(segment_file(dir.path(), "t")).unwrap();
        let first = eddy_log::batch::parse_header(&file).unwrap().unwrap();
        u64::from(first.batch_len)
    };
    let path = segment_file(dir.path(), "t");
    let mut file = std::fs::read(&path).unwrap();
    file[position as usize + eddy_log::batch::HEADER_LEN + 12] ^= 0x10;
    std::fs::write(&path, file).unwrap();

    let log = Log::open(dir.path()).unwrap();
    match read_all(&mut *log.reader("t", 0, 3).unwrap()) {
        Err(Error::Corrupt {
            path: p,
            position: at,
            ..
        }) => assert_eq!((p, at), (path.clone(), position)),
        other => panic!("expected damage, got {other:?}"),
    }
    let mut skipping = log.reader_skipping_damage("t", 0, 0).unwrap();
    let got = read_all(&mut *skipping).unwrap();
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2, 8, 9]
    );
    assert_eq!(skipping.skipped(), 5);
    // Read whole, the same.
    let mut skipping = log.reader_skipping_damage("t", 0, 0).unwrap();
    let polled = poll_all_laid_out(&mut *skipping);
    assert!(polled.iter().all(|p| matches!(p, Polled::Records(_))));
    assert_eq!(skipping.skipped(), 5);
    let damage = log
        .topic("t")
        .unwrap()
        .partition(0)
        .unwrap()
        .verify()
        .unwrap();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(
        (damage[0].file.clone(), damage[0].offsets.clone()),
        (path, 3..8)
    );
}

#[test]
fn a_torn_laid_out_tail_is_cut_on_reopen_without_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_file(dir.path(), "t");
    let whole_len = {
        let log = Log::open(dir.path()).unwrap();
        rows_laid_out_rows(&log, "t", UNKNOWN);
        std::fs::metadata(&path).unwrap().len()
    };
    // A second laid-out batch cut short by a crash.
    let (torn, _, _) = toy(UNKNOWN, 4, 5_000, "torn");
    let mut file = std::fs::read(&path).unwrap();
    file.extend_from_slice(&torn.as_bytes()[..torn.len() - 7]);
    std::fs::write(&path, file).unwrap();

    let log = Log::open(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole_len);
    assert_eq!(log.offsets("t", 0).unwrap(), (0, 10));
    let topic = log.topic("t").unwrap();
    assert!(topic.partition(0).unwrap().damage().is_empty());
    let polled = poll_all_laid_out(&mut *log.reader("t", 0, 0).unwrap());
    assert!(matches!(&polled[1], Polled::LaidOut(b) if b.base_offset == 3 && b.record_count == 5));
    let (again, _, _) = toy(UNKNOWN, 4, 5_000, "again");
    let acks = log.produce_laid_out("t", vec![(0, again)]).unwrap();
    assert_eq!(acks[0].base_offset, 10);
}

#[test]
fn produce_laid_out_acks_in_order_and_continues_offsets_after_rows() {
    register();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    assert!(log.takes_laid_out());
    let config = TopicConfig {
        partitions: 3,
        ..TopicConfig::default()
    };
    let topic = log.create_topic("t", config).unwrap();
    rows(&topic, 0, 4, 0);
    rows(&topic, 2, 7, 0);
    let batches = vec![
        (2, toy(TOY, 3, 100, "a").0),
        (0, toy(TOY, 2, 100, "b").0),
        (1, toy(TOY, 5, 100, "c").0),
        (2, toy(TOY, 1, 100, "d").0),
    ];
    let acks = log.produce_laid_out("t", batches).unwrap();
    let got: Vec<(u32, u64, u64)> = acks
        .iter()
        .map(|a| (a.partition, a.base_offset, a.last_offset))
        .collect();
    assert_eq!(got, [(2, 7, 9), (0, 4, 5), (1, 0, 4), (2, 10, 10)]);
    rows(&topic, 2, 1, 0);
    assert_eq!(log.offsets("t", 2).unwrap(), (0, 12));
    let read = read_all(&mut *log.reader("t", 2, 0).unwrap()).unwrap();
    assert_eq!(read.len(), 12);
    assert_eq!(read[10].value, Bytes::from("d event 0"));

    // Refusals store nothing.
    let err = log
        .produce_laid_out(
            "t",
            vec![(0, toy(TOY, 1, 0, "x").0), (3, toy(TOY, 1, 0, "y").0)],
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::PartitionOutOfRange { partition: 3, .. }),
        "{err}"
    );
    assert!(matches!(
        log.produce_laid_out("t", vec![(0, EncodedBatch::laid_out(Vec::new(), 1, 0, 0))]),
        Err(Error::EmptyBatch)
    ));
    assert!(matches!(
        log.produce_laid_out("t", vec![(0, EncodedBatch::laid_out(vec![TOY], 0, 0, 0))]),
        Err(Error::EmptyBatch)
    ));
    assert!(matches!(
        log.produce_laid_out("t", Vec::new()),
        Err(Error::EmptyBatch)
    ));
    assert_eq!(log.offsets("t", 0).unwrap(), (0, 6));
}

#[test]
fn produce_laid_out_checks_the_batch_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let config = TopicConfig {
        max_batch_bytes: 1024,
        max_record_bytes: 512,
        ..TopicConfig::default()
    };
    log.create_topic("t", config).unwrap();
    let big = EncodedBatch::laid_out(vec![TOY; 2000], 1, 0, 0);
    assert!(matches!(
        log.produce_laid_out("t", vec![(0, big)]),
        Err(Error::BatchTooLarge { .. })
    ));
}

#[test]
fn offset_for_time_finds_records_inside_laid_out_batches() {
    register();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let (_topic, records, _) = rows_laid_out_rows(&log, "t", TOY);
    // Record 2 of the batch (offset 5) is the first at or after its own timestamp.
    let ts = records[2].timestamp;
    let first = records.iter().position(|r| r.timestamp >= ts).unwrap() as u64;
    assert_eq!(log.offset_for_time("t", 0, ts).unwrap(), 3 + first);
    // Without the layout, the batch's start: nothing before it is at or after the time.
    let (_t, _, _) = rows_laid_out_rows(&log, "u", UNKNOWN);
    assert_eq!(log.offset_for_time("u", 0, ts).unwrap(), 3);
}

#[test]
fn a_bus_that_does_not_take_laid_out_batches_says_so() {
    struct Rows(Log);
    // Only the defaults of the contract are under test; the rest forwards.
    impl Bus for Rows {
        fn kind(&self) -> &'static str {
            "rows"
        }
        fn shared(&self) -> bool {
            false
        }
        fn epoch(&self) -> eddy_log::Result<String> {
            self.0.epoch()
        }
        fn ensure_topic(&self, name: &str, config: &TopicConfig) -> eddy_log::Result<u32> {
            self.0.ensure_topic(name, config)
        }
        fn partition_count(&self, topic: &str) -> eddy_log::Result<u32> {
            self.0.partition_count(topic)
        }
        fn produce(
            &self,
            topic: &str,
            records: Vec<Record>,
            choice: PartitionChoice,
        ) -> eddy_log::Result<Vec<eddy_log::AppendAck>> {
            self.0.produce(topic, records, choice)
        }
        fn offsets(&self, topic: &str, partition: u32) -> eddy_log::Result<(u64, u64)> {
            self.0.offsets(topic, partition)
        }
        fn reader(
            &self,
            topic: &str,
            partition: u32,
            offset: u64,
        ) -> eddy_log::Result<Box<dyn eddy_log::BusReader>> {
            // A reader without the native `poll_laid_out`.
            struct Plain(Box<dyn eddy_log::BusReader>);
            impl eddy_log::BusReader for Plain {
                fn partition(&self) -> u32 {
                    self.0.partition()
                }
                fn position(&self) -> u64 {
                    self.0.position()
                }
                fn seek(&mut self, offset: u64) -> eddy_log::Result<()> {
                    self.0.seek(offset)
                }
                fn poll(&mut self, timeout: Duration) -> eddy_log::Result<Vec<StoredRecord>> {
                    self.0.poll(timeout)
                }
            }
            Ok(Box::new(Plain(self.0.reader(topic, partition, offset)?)))
        }
        fn commit(&self, g: &str, t: &str, o: &[(u32, u64)]) -> eddy_log::Result<()> {
            self.0.commit(g, t, o)
        }
        fn committed(&self, g: &str, t: &str, p: u32) -> eddy_log::Result<Option<u64>> {
            self.0.committed(g, t, p)
        }
        fn join(
            &self,
            g: &str,
            t: &str,
            f: Box<dyn FnMut(eddy_log::Membership) + Send>,
        ) -> eddy_log::Result<Box<dyn eddy_log::GroupMember>> {
            self.0.join(g, t, f)
        }
        fn offset_for_time(&self, t: &str, p: u32, ts: i64) -> eddy_log::Result<u64> {
            self.0.offset_for_time(t, p, ts)
        }
    }
    register();
    let dir = tempfile::tempdir().unwrap();
    let bus = Rows(Log::open(dir.path()).unwrap());
    rows_laid_out_rows(&bus.0, "t", TOY);
    assert!(!bus.takes_laid_out());
    let err = bus
        .produce_laid_out("t", vec![(0, toy(TOY, 1, 0, "x").0)])
        .unwrap_err();
    assert!(
        matches!(err, Error::LaidOutUnsupported { bus: "rows" }),
        "{err}"
    );
    assert!(err.to_string().contains("does not take"), "{err}");
    // The default `poll_laid_out` gives records only, all of them.
    let polled = poll_all_laid_out(&mut *bus.reader("t", 0, 0).unwrap());
    let offsets: Vec<u64> = polled
        .iter()
        .flat_map(|p| match p {
            Polled::Records(r) => r.iter().map(|r| r.offset).collect::<Vec<_>>(),
            Polled::LaidOut(b) => panic!("whole batch from a default reader: {b:?}"),
        })
        .collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
}

#[test]
fn poll_laid_out_keeps_max_bytes_and_wakes_for_new_batches() {
    register();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path()).unwrap());
    let topic = log.create_topic("t", TopicConfig::default()).unwrap();
    for i in 0..3 {
        let (batch, _, _) = toy(TOY, 2, 100, &format!("b{i}"));
        topic.produce_laid_out(vec![(0, batch)]).unwrap();
    }
    // About one byte a poll: one whole batch each.
    let mut reader = topic.reader(0, 0).unwrap().with_max_bytes(1);
    for base in [0, 2, 4] {
        let polled = reader.poll_laid_out().unwrap();
        assert!(
            matches!(&polled[..], [Polled::LaidOut(b)] if b.base_offset == base),
            "{polled:?}"
        );
    }
    assert!(reader.poll_laid_out().unwrap().is_empty());
    // A waiting reader wakes for a batch appended meanwhile.
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let (batch, _, _) = toy(TOY, 4, 100, "late");
            log.produce_laid_out("t", vec![(0, batch)]).unwrap();
        })
    };
    let mut waiting = log.reader("t", 0, 6).unwrap();
    let polled = waiting.poll_laid_out(Duration::from_secs(30)).unwrap();
    writer.join().unwrap();
    assert!(
        matches!(&polled[..], [Polled::LaidOut(b)] if b.base_offset == 6 && b.record_count == 4),
        "{polled:?}"
    );
}
