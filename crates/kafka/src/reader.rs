//! [`KafkaReader`]: one partition read by an assigned consumer, outside any group.

use std::time::{Duration, Instant};

use eddy_log::{BusReader, Error, Result, StoredRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::bus::{apply_properties, consumer_config, is_offset_out_of_range};
use crate::config::KafkaConfig;
use crate::error::broker;
use crate::records::stored_record;

/// The group id readers carry (librdkafka wants one); no reader joins or commits to it.
const READER_GROUP: &str = "eddy-reader";

/// Most records one poll returns.
const MAX_RECORDS_PER_POLL: usize = 1000;

/// A reader of one partition from an offset. It joins no group and commits nothing.
pub(crate) struct KafkaReader {
    consumer: BaseConsumer,
    topic: String,
    partition: u32,
    position: u64,
    request_timeout: Duration,
}

impl KafkaReader {
    pub(crate) fn new(
        config: &KafkaConfig,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<KafkaReader> {
        // librdkafka wants a group id even for assigned consumers; this group is never joined
        // and never committed to.
        let mut client = consumer_config(config, READER_GROUP);
        apply_properties(&mut client, config);
        let consumer = client
            .create()
            .map_err(|e| broker(format!("creating a reader of {topic}/{partition}"), e))?;
        let mut reader = KafkaReader {
            consumer,
            topic: topic.to_string(),
            partition,
            position: offset,
            request_timeout: config.request_timeout,
        };
        reader.assign(offset)?;
        Ok(reader)
    }

    fn assign(&mut self, offset: u64) -> Result<()> {
        let operation = || {
            format!(
                "reading {}/{} from offset {offset}",
                self.topic, self.partition
            )
        };
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(
            &self.topic,
            self.partition as i32,
            Offset::Offset(offset as i64),
        )
        .map_err(|e| broker(operation(), e))?;
        self.consumer
            .assign(&list)
            .map_err(|e| broker(operation(), e))?;
        self.position = offset;
        Ok(())
    }

    /// The error for a position the partition does not hold, with what it holds.
    fn out_of_range(&self) -> Error {
        match self.consumer.fetch_watermarks(
            &self.topic,
            self.partition as i32,
            self.request_timeout,
        ) {
            Ok((low, high)) => Error::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.partition,
                requested: self.position,
                earliest: low.max(0) as u64,
                latest: high.max(0) as u64,
            },
            Err(e) => broker(
                format!(
                    "reading the offsets of {}/{} after offset {} was out of range",
                    self.topic, self.partition, self.position
                ),
                e,
            ),
        }
    }
}

impl BusReader for KafkaReader {
    fn partition(&self) -> u32 {
        self.partition
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn seek(&mut self, offset: u64) -> Result<()> {
        self.assign(offset)
    }

    fn poll(&mut self, timeout: Duration) -> Result<Vec<StoredRecord>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            // Once something arrived, take only what is already fetched.
            let wait = if out.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.consumer.poll(wait) {
                Some(Ok(message)) => {
                    let offset = u64::try_from(message.offset()).unwrap_or(0);
                    // Fetched before the last seek: not from the position on.
                    if offset < self.position || message.partition() != self.partition as i32 {
                        continue;
                    }
                    out.push(stored_record(&message));
                    self.position = offset + 1;
                    if out.len() >= MAX_RECORDS_PER_POLL {
                        return Ok(out);
                    }
                }
                // Hand out what was read; the next poll meets the error again if it lasts.
                Some(Err(_)) if !out.is_empty() => return Ok(out),
                Some(Err(e)) if is_offset_out_of_range(&e) => return Err(self.out_of_range()),
                Some(Err(e)) => {
                    return Err(broker(
                        format!(
                            "reading {}/{} at offset {}",
                            self.topic, self.partition, self.position
                        ),
                        e,
                    ))
                }
                None if !out.is_empty() || Instant::now() >= deadline => return Ok(out),
                None => {}
            }
        }
    }
}
