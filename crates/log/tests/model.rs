//! A model test: random sequences of appends, reopenings, reads and time seeks against the log
//! and against a plain in-memory vector per partition; both must always agree. Some batches are
//! laid out above the log (a toy layout), and some reads take them whole.

mod toy;

use eddy_log::{Compression, Log, Polled, Record, TopicConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append records (timestamp, value length) to a partition.
    Append {
        partition: u32,
        records: Vec<(i64, usize)>,
        compression: Compression,
        /// Laid out by the toy layout instead (compression unused).
        laid_out: bool,
    },
    /// Close and reopen the log.
    Reopen,
    /// Read a partition from an offset with a read size limit.
    Read {
        partition: u32,
        offset: u64,
        max_bytes: usize,
        /// With `poll_laid_out`: laid-out batches whole, decoded here.
        whole: bool,
    },
    /// Seek a partition by time.
    SeekTime { partition: u32, ts: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (
            0..2u32,
            proptest::collection::vec((0i64..1000, 0usize..300), 1..30),
            prop_oneof![Just(Compression::None), Just(Compression::Lz4), Just(Compression::Zstd)],
            any::<bool>(),
        )
            .prop_map(|(partition, records, compression, laid_out)| Op::Append { partition, records, compression, laid_out }),
        1 => Just(Op::Reopen),
        3 => (0..2u32, 0u64..400, 1usize..5000, any::<bool>())
            .prop_map(|(partition, offset, max_bytes, whole)| Op::Read { partition, offset, max_bytes, whole }),
        2 => (0..2u32, -10i64..1010).prop_map(|(partition, ts)| Op::SeekTime { partition, ts }),
    ]
}

fn value(partition: u32, offset: usize, len: usize) -> Vec<u8> {
    let seed = format!("{partition}/{offset}:");
    seed.bytes().cycle().take(len.max(seed.len())).collect()
}

fn config() -> TopicConfig {
    TopicConfig {
        partitions: 2,
        segment_bytes: 4096,
        index_interval_bytes: 256,
        retention_ms: None,
        ..TopicConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn log_agrees_with_an_in_memory_model(ops in proptest::collection::vec(op(), 1..40)) {
        toy::register();
        let dir = tempfile::tempdir().unwrap();
        let mut log = Some(Log::open(dir.path()).unwrap());
        log.as_ref().unwrap().create_topic("m", config()).unwrap();
        // Per partition: (timestamp, value).
        let mut model: Vec<Vec<(i64, Vec<u8>)>> = vec![Vec::new(), Vec::new()];
        for op in ops {
            let topic = log.as_ref().unwrap().topic("m").unwrap();
            match op {
                Op::Append { partition, records, compression, laid_out } => {
                    let p = topic.partition(partition).unwrap();
                    let m = &mut model[partition as usize];
                    let batch: Vec<Record> = records
                        .iter()
                        .enumerate()
                        .map(|(i, &(ts, len))| Record::new(value(partition, m.len() + i, len)).with_timestamp(ts))
                        .collect();
                    let encoded = if laid_out {
                        toy::batch(&batch)
                    } else {
                        p.encode_with(&batch, compression).unwrap()
                    };
                    let ack = p.append_encoded(encoded).unwrap();
                    prop_assert_eq!(ack.base_offset, m.len() as u64);
                    for r in batch {
                        m.push((r.timestamp.unwrap(), r.value.to_vec()));
                    }
                }
                Op::Reopen => {
                    drop(topic);
                    drop(log.take()); // releases the lock before the reopen
                    log = Some(Log::open(dir.path()).unwrap());
                }
                Op::Read { partition, offset, max_bytes, whole } => {
                    let m = &model[partition as usize];
                    let mut reader = topic.reader(partition, offset).unwrap().with_max_bytes(max_bytes);
                    let mut got = Vec::new();
                    loop {
                        if !whole {
                            let batch = reader.poll().unwrap();
                            if batch.is_empty() {
                                break;
                            }
                            got.extend(batch);
                            continue;
                        }
                        let polled = reader.poll_laid_out().unwrap();
                        if polled.is_empty() {
                            break;
                        }
                        for p in polled {
                            match p {
                                Polled::Records(records) => got.extend(records),
                                Polled::LaidOut(b) => {
                                    // Whole only when the read starts at or before it.
                                    prop_assert!(b.base_offset >= offset);
                                    let records = toy::records(&b.payload).unwrap();
                                    prop_assert_eq!(records.len(), b.record_count as usize);
                                    got.extend(records.into_iter().enumerate().map(|(i, r)| {
                                        eddy_log::StoredRecord {
                                            offset: b.base_offset + i as u64,
                                            timestamp: r.timestamp,
                                            key: None,
                                            value: r.value,
                                            headers: Vec::new(),
                                        }
                                    }));
                                }
                            }
                        }
                    }
                    let want: Vec<(u64, i64, Vec<u8>)> = m
                        .iter()
                        .enumerate()
                        .skip(offset as usize)
                        .map(|(i, (ts, v))| (i as u64, *ts, v.clone()))
                        .collect();
                    let got: Vec<(u64, i64, Vec<u8>)> =
                        got.into_iter().map(|r| (r.offset, r.timestamp, r.value.to_vec())).collect();
                    prop_assert_eq!(got, want);
                }
                Op::SeekTime { partition, ts } => {
                    let m = &model[partition as usize];
                    let want = m.iter().position(|(t, _)| *t >= ts).unwrap_or(m.len()) as u64;
                    let got = topic.partition(partition).unwrap().offset_for_time(ts).unwrap();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
