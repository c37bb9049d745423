//! [`KafkaBus`]: the bus's contract over one producer, an admin client, and consumers made per
//! reader, per group member and per group that commits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use eddy_base::sync::{lock, read, write};
use eddy_log::{
    partition_by_key, validate_name, AppendAck, Bus, BusReader, Error, GroupMember, Membership,
    PartitionChoice, Record, Result, TopicConfig,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::config::KafkaConfig;
use crate::error::{broker, code};
use crate::member::{KafkaMember, MemberConsumer};
use crate::produce::{Delivery, DeliveryContext, Outcome};
use crate::reader::KafkaReader;
use crate::records::{kafka_headers, kafka_timestamp};

/// The group id of the consumer that looks offsets up by time (never joined, never committed).
const TIME_LOOKUP_GROUP: &str = "eddy-time-lookup";

/// eddy's bus on a Kafka cluster. See the crate's documentation for where it differs from the
/// embedded log.
pub struct KafkaBus {
    config: KafkaConfig,
    producer: ThreadedProducer<DeliveryContext>,
    admin: AdminClient<DefaultClientContext>,
    /// Partition counts seen, so keyed produces need no metadata request. eddy never adds
    /// partitions to a topic (that would move keys), so a count does not go stale.
    partitions: RwLock<HashMap<String, u32>>,
    /// Where the next batch of unkeyed records goes.
    round_robin: AtomicU32,
    /// Per group, a consumer that commits and reads offsets without joining the group.
    committers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    /// Per group, this process's member of it, if one is joined: Kafka refuses commits from
    /// outside a group that has members, so commits go through the member.
    members: Mutex<HashMap<String, Weak<MemberConsumer>>>,
}

impl KafkaBus {
    /// Connects to the cluster (lazily: the first request that needs a broker fails if none
    /// answers).
    pub fn connect(config: KafkaConfig) -> Result<KafkaBus> {
        let mut producer_config = client_config(&config, "producer");
        producer_config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            )
            // Records leave at once: a produce call waits for them anyway.
            .set("linger.ms", "0");
        apply_properties(&mut producer_config, &config);
        let producer = producer_config
            .create_with_context(DeliveryContext)
            .map_err(|e| broker("creating the producer", e))?;
        let mut admin_config = client_config(&config, "admin");
        apply_properties(&mut admin_config, &config);
        let admin = admin_config
            .create()
            .map_err(|e| broker("creating the admin client", e))?;
        Ok(KafkaBus {
            config,
            producer,
            admin,
            partitions: RwLock::new(HashMap::new()),
            round_robin: AtomicU32::new(0),
            committers: Mutex::new(HashMap::new()),
            members: Mutex::new(HashMap::new()),
        })
    }

    /// The settings this bus was connected with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// The topic's partition count from the brokers' metadata, or `None` if it does not exist.
    fn fetch_partition_count(&self, topic: &str) -> Result<Option<u32>> {
        let operation = || format!("reading the metadata of topic {topic:?}");
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(topic), self.config.request_timeout)
            .map_err(|e| broker(operation(), e))?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match found.error() {
            None if !found.partitions().is_empty() => Ok(Some(found.partitions().len() as u32)),
            None => Ok(None),
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Ok(None),
            Some(e) => Err(broker(operation(), RDKafkaErrorCode::from(e))),
        }
    }

    /// Checks `partition` against the topic's count.
    fn check_partition(&self, topic: &str, partition: u32) -> Result<()> {
        let partitions = self.partition_count(topic)?;
        if partition >= partitions {
            return Err(Error::PartitionOutOfRange {
                topic: topic.to_string(),
                partition,
                partitions,
            });
        }
        Ok(())
    }

    /// A consumer of `group` that never joins it, for commits and committed offsets.
    fn committer(&self, group: &str) -> Result<Arc<BaseConsumer>> {
        let mut committers = lock(&self.committers);
        if let Some(c) = committers.get(group) {
            return Ok(c.clone());
        }
        let mut config = consumer_config(&self.config, group);
        apply_properties(&mut config, &self.config);
        let consumer: Arc<BaseConsumer> = Arc::new(
            config
                .create()
                .map_err(|e| broker(format!("creating a consumer of group {group:?}"), e))?,
        );
        committers.insert(group.to_string(), consumer.clone());
        Ok(consumer)
    }

    /// Sends each `(index in the call, partition, record)`, counting each in `delivery`.
    fn send_all(
        &self,
        topic: &str,
        records: &[(usize, u32, &Record)],
        delivery: &Arc<Delivery>,
    ) -> Result<()> {
        let now = eddy_log::now_ns();
        for &(index, partition, record) in records {
            let ns = record.timestamp.unwrap_or(now);
            let mut message = BaseRecord::with_opaque_to(topic, delivery.clone())
                .partition(partition as i32)
                .payload(&record.value[..])
                .timestamp(kafka_timestamp(ns))
                .headers(kafka_headers(&record.headers, ns));
            if let Some(key) = &record.key {
                message = message.key(&key[..]);
            }
            delivery.sent();
            loop {
                match self.producer.send(message) {
                    Ok(()) => break,
                    Err((e, returned)) if code(&e) == Some(RDKafkaErrorCode::QueueFull) => {
                        // The client's queue is full of this and other calls' records: wait
                        // for some to be delivered.
                        message = returned;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) if code(&e) == Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                        return Err(Error::RecordTooLarge {
                            index,
                            size: eddy_log::batch::record_size(record),
                            limit: self.max_message_bytes(),
                        });
                    }
                    Err((e, _)) => {
                        return Err(broker(
                            format!("producing record {index} to {topic}/{partition}"),
                            e,
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The producer's limit on a record batch, librdkafka's `message.max.bytes`.
    fn max_message_bytes(&self) -> usize {
        self.config
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// Settings every client of the bus shares.
fn client_config(config: &KafkaConfig, role: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", format!("eddy-{role}"))
        .set(
            "socket.timeout.ms",
            config.request_timeout.as_millis().to_string(),
        )
        // A topic that does not exist is an error, never created with the brokers' defaults.
        .set("allow.auto.create.topics", "false");
    c
}

/// Settings of consumers that read or commit but take no part in a group's assignment.
pub(crate) fn consumer_config(config: &KafkaConfig, group: &str) -> ClientConfig {
    let mut c = client_config(config, "consumer");
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Reading before the first offset is an error, as in the embedded log.
        .set("auto.offset.reset", "error")
        // A waiting reader sees new records within this, not the default 500 ms.
        .set("fetch.wait.max.ms", "50");
    c
}

/// The user's extra properties, last so they win.
pub(crate) fn apply_properties(c: &mut ClientConfig, config: &KafkaConfig) {
    for (k, v) in &config.properties {
        c.set(k, v);
    }
}

/// Runs a future of the admin client to completion on this thread: its results come from the
/// admin client's own thread, so no async runtime is needed.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut context) {
            return out;
        }
        std::thread::park();
    }
}

impl Bus for KafkaBus {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn shared(&self) -> bool {
        true
    }

    fn epoch(&self) -> Result<String> {
        // librdkafka remembers the id of the last metadata it saw; ask again, so a reset of the
        // cluster's storage is seen by the next call, not by the next periodic refresh.
        let client = self.producer.client();
        client
            .fetch_metadata(None, self.config.request_timeout)
            .map_err(|e| broker("reading the cluster id", e))?;
        client
            .fetch_cluster_id(self.config.request_timeout)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| broker("reading the cluster id", "the brokers gave none (in time)"))
    }

    fn ensure_topic(&self, name: &str, config: &TopicConfig) -> Result<u32> {
        validate_name("topic", name)?;
        config.validate()?;
        if let Some(count) = self.fetch_partition_count(name)? {
            write(&self.partitions).insert(name.to_string(), count);
            return Ok(count);
        }
        // Kafka's "keep all" is -1; a limit past i64 is as good as none.
        let kafka_limit = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(-1));
        let retention_ms = kafka_limit(config.retention_ms).to_string();
        let retention_bytes = kafka_limit(config.retention_bytes).to_string();
        let replication =
            TopicReplication::Fixed(self.config.replication_factor.map_or(-1, i32::from));
        let segment_ms = config.segment_ms.to_string();
        let cleanup = match (config.compacted, config.retention_ms.is_some()) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            (false, _) => "delete",
        };
        let topic = NewTopic::new(name, config.partitions as i32, replication)
            .set("retention.ms", &retention_ms)
            .set("retention.bytes", &retention_bytes)
            .set("segment.ms", &segment_ms)
            .set("cleanup.policy", cleanup);
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout));
        let operation = || format!("creating topic {name:?}");
        let results = block_on(self.admin.create_topics([&topic], &options))
            .map_err(|e| broker(operation(), e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, e)) => return Err(broker(operation(), e)),
            }
        }
        // The metadata of a new topic reaches every broker a moment after its creation.
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            if let Some(count) = self.fetch_partition_count(name)? {
                write(&self.partitions).insert(name.to_string(), count);
                return Ok(count);
            }
            if Instant::now() >= deadline {
                return Err(broker(
                    operation(),
                    "created, but not in the metadata in time",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(&count) = read(&self.partitions).get(topic) {
            return Ok(count);
        }
        let count = self
            .fetch_partition_count(topic)?
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        write(&self.partitions).insert(topic.to_string(), count);
        Ok(count)
    }

    fn produce(
        &self,
        topic: &str,
        records: Vec<Record>,
        choice: PartitionChoice,
    ) -> Result<Vec<AppendAck>> {
        if records.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let partitions = self.partition_count(topic)?;
        // Refused before anything is sent, so a too-large record stores none of the call's.
        eddy_log::batch::check_record_sizes(&records, self.max_message_bytes())?;
        let placed: Vec<(usize, u32, &Record)> = match choice {
            PartitionChoice::Explicit(p) => {
                self.check_partition(topic, p)?;
                records.iter().enumerate().map(|(i, r)| (i, p, r)).collect()
            }
            PartitionChoice::ByKey => {
                let unkeyed = self.round_robin.fetch_add(1, Ordering::Relaxed) % partitions;
                let mut placed: Vec<(usize, u32, &Record)> = records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i, partition_by_key(r, partitions, unkeyed), r))
                    .collect();
                // Stable: each partition's records keep their order.
                placed.sort_by_key(|&(_, p, _)| p);
                placed
            }
        };
        let delivery = Arc::new(Delivery::default());
        self.send_all(topic, &placed, &delivery)?;
        // librdkafka reports every record within message.timeout.ms; the margin covers the
        // report's way back.
        match delivery.wait(self.config.delivery_timeout + Duration::from_secs(10)) {
            Outcome::Acked(acks, 0) => Ok(acks),
            Outcome::Acked(acks, without_offset) => {
                // librdkafka reports a batch the broker called a duplicate (sequence number
                // already seen) as delivered, without an offset. Right on Kafka after a retry of
                // a stored batch; on a broker whose sequence numbers went wrong (tansu 0.6.0
                // after librdkafka bumped the producer epoch: see the crate's documentation) the
                // records were never stored. Said, so that a loss can be traced here.
                tracing::warn!(
                    topic,
                    records = without_offset,
                    "the broker acknowledged records as duplicates of an earlier send (no \
                     offset): they are stored only if that earlier send was"
                );
                Ok(acks)
            }
            Outcome::Failed(p, message) => Err(broker(
                format!("producing to {topic}/{p} (acks=all)"),
                message,
            )),
            Outcome::TimedOut(missing) => Err(broker(
                format!("producing to {topic} (acks=all)"),
                format!("{missing} records without a delivery report"),
            )),
        }
    }

    fn offsets(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        self.check_partition(topic, partition)?;
        let (low, high) = self
            .producer
            .client()
            .fetch_watermarks(topic, partition as i32, self.config.request_timeout)
            .map_err(|e| broker(format!("reading the offsets of {topic}/{partition}"), e))?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }

    fn reader(&self, topic: &str, partition: u32, offset: u64) -> Result<Box<dyn BusReader>> {
        self.check_partition(topic, partition)?;
        Ok(Box::new(KafkaReader::new(
            &self.config,
            topic,
            partition,
            offset,
        )?))
    }

    fn commit(&self, group: &str, topic: &str, offsets: &[(u32, u64)]) -> Result<()> {
        validate_name("consumer group", group)?;
        for &(p, _) in offsets {
            self.check_partition(topic, p)?;
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let operation = || format!("committing offsets of group {group:?} on topic {topic:?}");
        let mut list = TopicPartitionList::new();
        for &(p, o) in offsets {
            list.add_partition_offset(topic, p as i32, Offset::Offset(o as i64))
                .map_err(|e| broker(operation(), e))?;
        }
        let member = lock(&self.members).get(group).and_then(Weak::upgrade);
        let result = match member {
            Some(member) => member.commit(&list, CommitMode::Sync),
            None => self.committer(group)?.commit(&list, CommitMode::Sync),
        };
        result.map_err(|e| broker(operation(), e))
    }

    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        validate_name("consumer group", group)?;
        self.check_partition(topic, partition)?;
        let operation =
            || format!("reading group {group:?}'s committed offset of {topic}/{partition}");
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition as i32);
        let committed = self
            .committer(group)?
            .committed_offsets(list, self.config.request_timeout)
            .map_err(|e| broker(operation(), e))?;
        let found = committed.find_partition(topic, partition as i32);
        match found {
            Some(elem) => {
                if let Err(e) = elem.error() {
                    return Err(broker(operation(), e));
                }
                match elem.offset() {
                    Offset::Offset(o) if o >= 0 => Ok(Some(o as u64)),
                    _ => Ok(None),
                }
            }
            None => Ok(None),
        }
    }

    fn join(
        &self,
        group: &str,
        topic: &str,
        on_change: Box<dyn FnMut(Membership) + Send>,
    ) -> Result<Box<dyn GroupMember>> {
        validate_name("consumer group", group)?;
        self.partition_count(topic)?;
        let member = KafkaMember::join(&self.config, group, topic, on_change)?;
        lock(&self.members).insert(group.to_string(), member.consumer());
        Ok(Box::new(member))
    }

    fn offset_for_time(&self, topic: &str, partition: u32, time_ns: i64) -> Result<u64> {
        self.check_partition(topic, partition)?;
        let operation =
            || format!("finding the offset of time {time_ns} ns in {topic}/{partition}");
        // Kafka's time index is in ms, rounded down as the records' timestamps are: every
        // record at or after `time_ns` is at or after the offset found for its millisecond.
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(
            topic,
            partition as i32,
            Offset::Offset(kafka_timestamp(time_ns)),
        )
        .map_err(|e| broker(operation(), e))?;
        let found = self
            .committer(TIME_LOOKUP_GROUP)?
            .offsets_for_times(list, self.config.request_timeout)
            .map_err(|e| broker(operation(), e))?;
        let offset = found
            .find_partition(topic, partition as i32)
            .map(|elem| elem.error().map(|()| elem.offset()))
            .transpose()
            .map_err(|e| broker(operation(), e))?;
        match offset {
            Some(Offset::Offset(o)) if o >= 0 => Ok(o as u64),
            // No record that late: the partition's end.
            _ => Ok(self.offsets(topic, partition)?.1),
        }
    }
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("bootstrap_servers", &self.config.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

/// Whether a consumer error says the offset asked for is not held.
pub(crate) fn is_offset_out_of_range(error: &KafkaError) -> bool {
    matches!(
        code(error),
        Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
    )
}
