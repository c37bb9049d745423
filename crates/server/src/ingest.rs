//! What every door shares after parsing: the repository (its topic, de-duplication window and
//! tag grouping), the in-flight budget that gives back-pressure, and the one `store` that turns
//! events into durable bus records.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use eddy_event::{codec, Event};
use eddy_log::{Log, PartitionChoice, Record, Topic, TopicConfig};
use eddy_schema::avro_json::Rejection;
use eddy_schema::gate::{Gate, GateError};
use eddy_schema::Registry;
use eddy_store::{digest, Digest, RepoStore};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::config::{topic_of, IngestConfig, ListenerConfig, RepositoryConfig};
use crate::dedup::{DedupWindow, Reservation};
use crate::grouping::TagGrouping;
use crate::metrics::{Door, Metrics, RejectReason};
use crate::ServerError;

/// A repository as the doors see it.
#[derive(Debug)]
pub struct Repository {
    /// Its name.
    pub name: String,
    /// Its bus topic.
    pub topic: Arc<Topic>,
    /// Its settings.
    pub config: RepositoryConfig,
    /// Its segments and work in progress.
    pub store: Arc<RepoStore>,
    /// The gatekeeper, when the repository is bound to a schema subject.
    pub gate: Option<Gate>,
    digest: Mutex<Option<Digest>>,
    digest_stats: Arc<eddy_store::digest::DigestStats>,
    dedup: Mutex<DedupWindow>,
    grouping: Mutex<TagGrouping>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state stays consistent between calls: a panic elsewhere does not spoil it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Repository {
    /// Opens (creating if needed) the repository's topic and store, re-reads the ids it stored
    /// within the de-duplication window (so a retry after a restart is still recognised), and
    /// starts its digest.
    pub fn open(
        log: &Arc<Log>,
        registry: &Arc<Registry>,
        name: &str,
        config: RepositoryConfig,
        ingest: &IngestConfig,
        store_root: &Path,
    ) -> Result<Repository, ServerError> {
        let gate = match &config.schema {
            Some(s) => Some(Gate::new(
                registry.clone(),
                s.binding()
                    .map_err(|e| ServerError::Config(format!("repositories.{name}.{e}")))?,
            )),
            None => None,
        };
        let topic = log.topic_or_create(
            &topic_of(name),
            TopicConfig {
                partitions: config.partitions,
                // The bus keeps what the digest has not sealed into segments yet.
                retain_for_groups: vec![digest::GROUP.to_string()],
                ..TopicConfig::default()
            },
        )?;
        if !topic
            .config()
            .retain_for_groups
            .iter()
            .any(|g| g == digest::GROUP)
        {
            tracing::warn!(repository = %name, "this repository's topic predates the store: bus retention may delete events not yet digested");
        }
        let store_config = config
            .store_config(&format!("repositories.{name}"))
            .map_err(|p| ServerError::Config(p.join("\n")))?;
        let store = Arc::new(RepoStore::open(name, &store_root.join(name), store_config)?);
        let digest = Digest::start(log.clone(), topic.clone(), store.clone());
        if topic.partition_count() != config.partitions {
            tracing::warn!(
                repository = %name,
                configured = config.partitions,
                actual = topic.partition_count(),
                "the partition count of an existing repository cannot change; keeping the existing one"
            );
        }
        let window_ns = i64::try_from(ingest.dedup_window.as_nanos()).unwrap_or(i64::MAX);
        let dedup = recent_client_ids(&topic, window_ns, ingest.dedup_max_ids);
        Ok(Repository {
            name: name.to_string(),
            grouping: Mutex::new(TagGrouping::new(config.max_tag_values, config.tag_buckets)),
            topic,
            config,
            store,
            gate,
            digest_stats: digest.stats.clone(),
            digest: Mutex::new(Some(digest)),
            dedup: Mutex::new(dedup),
        })
    }

    /// The events that do not fit the repository's schema, by index, each with its reasons
    /// (none without a gate).
    pub fn refused(&self, events: &[Event]) -> Result<Vec<(usize, Vec<Rejection>)>, GateError> {
        let Some(gate) = &self.gate else {
            return Ok(Vec::new());
        };
        let contract = gate.contract()?;
        let checker = contract.checker();
        let mut refused = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if let Err(why) = checker.check(as_json(e)) {
                refused.push((i, why));
            }
        }
        Ok(refused)
    }

    /// Stops the digest (its work in progress stays in the bus, to be rebuilt at start).
    pub fn stop_digest(&self) {
        if let Some(d) = lock(&self.digest).take() {
            d.stop();
        }
    }

    /// The repository's gauges, read now for the metrics.
    pub fn gauges(&self) -> crate::metrics::RepositoryGauges {
        let damage: Vec<eddy_log::Damage> = self
            .topic
            .partitions()
            .iter()
            .flat_map(|p| p.damage())
            .collect();
        crate::metrics::RepositoryGauges {
            grouped_tags: lock(&self.grouping).grouped().count(),
            dedup_ids: lock(&self.dedup).len(),
            bus_damaged_stretches: damage.len(),
            bus_damaged_records: damage.iter().map(|d| d.records()).sum(),
            digest_unreadable_records: self
                .digest_stats
                .unreadable
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// An event as the gatekeeper sees it: a JSON event as it was sent, any other its fields.
fn as_json(e: &Event) -> serde_json::Value {
    if let (Some(eddy_event::Parser::Json), Some(raw)) = (e.parsed_by, &e.raw) {
        if let Ok(v) = serde_json::from_str(raw) {
            return v;
        }
    }
    let fields = e.fields.iter().map(|(k, v)| {
        let v = match v {
            eddy_event::Value::Null => serde_json::Value::Null,
            eddy_event::Value::Bool(b) => (*b).into(),
            eddy_event::Value::Int(i) => (*i).into(),
            eddy_event::Value::Float(f) => (*f).into(),
            eddy_event::Value::Str(s) => s.clone().into(),
        };
        (k.clone(), v)
    });
    serde_json::Value::Object(fields.collect())
}

/// The de-duplication window as the bus holds it: the client `@id`s of the records of each
/// partition that arrived within the window (at most the last `max_ids`). Best effort: damaged
/// bus data is skipped and any other read error ends that partition's rebuild with a warning,
/// since a smaller window only lets a retry through, while refusing to start serves no one.
fn recent_client_ids(topic: &Topic, window_ns: i64, max_ids: usize) -> DedupWindow {
    let now = eddy_log::now_ns();
    let horizon = now.saturating_sub(window_ns);
    let mut window = DedupWindow::new(window_ns, max_ids);
    let mut found = Vec::new();
    for p in topic.partitions() {
        if let Err(e) = client_ids_since(topic, p, horizon, max_ids, &mut found) {
            tracing::warn!(
                topic = topic.name(),
                partition = p.id(),
                "the de-duplication window is rebuilt only in part: {e}"
            );
        }
    }
    found.sort_unstable();
    for (at, id) in found {
        window.commit([id], at);
    }
    window
}

/// Adds to `found` the client ids of `partition`'s last `max_ids` records that arrived after
/// `horizon`. (The bus's time index is by event time, which says nothing of arrival.)
fn client_ids_since(
    topic: &Topic,
    partition: &eddy_log::Partition,
    horizon: i64,
    max_ids: usize,
    found: &mut Vec<(i64, Uuid)>,
) -> Result<(), eddy_log::Error> {
    let from = partition
        .end_offset()
        .saturating_sub(max_ids as u64)
        .max(partition.start_offset());
    let mut reader = topic.reader(partition.id(), from)?.skipping_damage();
    loop {
        let records = reader.poll()?;
        if records.is_empty() {
            return Ok(());
        }
        for r in records.iter().filter(|r| codec::has_client_id(&r.value)) {
            // Records that are not events are not ours to judge here; their fields are not
            // needed.
            if let Ok((e, _)) = codec::decode_lazily(&r.value) {
                if e.id_from_client && e.ingest_timestamp >= horizon {
                    found.push((e.ingest_timestamp, e.id));
                }
            }
        }
    }
}

/// What a successful store did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// Events now durable.
    pub events: usize,
    /// Events dropped as duplicates of ones stored before.
    pub duplicates: usize,
}

/// Why events were not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another request is storing an event with the same `@id`; retrying will find it stored.
    #[error("an event with @id {0} is being stored by another request; retry")]
    Busy(Uuid),
    /// The bus failed.
    #[error("the bus could not store the events: {0}")]
    Bus(#[from] eddy_log::Error),
}

/// Bytes of events being parsed or stored, across all doors.
#[derive(Debug)]
pub struct Budget {
    permits: Arc<Semaphore>,
    capacity: u32,
}

impl Budget {
    /// Room for `capacity` bytes in flight.
    pub fn new(capacity: usize) -> Budget {
        let capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
        Budget {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    fn weight(&self, bytes: usize) -> u32 {
        u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity)
    }

    /// Waits for room for `bytes` (a request larger than the whole budget waits for all of it).
    pub async fn acquire(&self, bytes: usize) -> OwnedSemaphorePermit {
        match self
            .permits
            .clone()
            .acquire_many_owned(self.weight(bytes))
            .await
        {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => unreachable!("the in-flight budget is never closed"),
        }
    }

    /// Like [`Budget::acquire`], but gives up after `timeout`.
    pub async fn acquire_within(
        &self,
        bytes: usize,
        timeout: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(timeout, self.acquire(bytes))
            .await
            .ok()
    }

    /// Bytes in flight now, and the capacity.
    pub fn usage(&self) -> (usize, usize) {
        let cap = self.capacity as usize;
        (cap - self.permits.available_permits().min(cap), cap)
    }

    /// What `charge` may still take: it holds the whole budget at most, so it never waits
    /// for room that cannot exist.
    fn room_for(&self, charge: &Charge, bytes: usize) -> u32 {
        let left = (self.capacity as usize).saturating_sub(charge.bytes());
        u32::try_from(bytes.min(left)).unwrap_or(self.capacity)
    }

    /// Adds room for `bytes` more to `charge` if there is room now.
    pub fn try_charge(&self, charge: &mut Charge, bytes: usize) -> bool {
        let n = self.room_for(charge, bytes);
        if n == 0 {
            return true;
        }
        match self.permits.clone().try_acquire_many_owned(n) {
            Ok(more) => {
                charge.hold(more);
                true
            }
            Err(_) => false,
        }
    }

    /// Adds room for `bytes` more to `charge`, waiting up to `timeout`; false if none came.
    pub async fn charge(&self, charge: &mut Charge, bytes: usize, timeout: Duration) -> bool {
        let n = self.room_for(charge, bytes);
        if n == 0 {
            return true;
        }
        match self.acquire_within(n as usize, timeout).await {
            Some(more) => {
                charge.hold(more);
                true
            }
            None => false,
        }
    }
}

/// Room in the budget for bytes that arrive bit by bit (an HTTP body): charged as they come,
/// so a slow client holds only what it has sent. Given back when dropped.
#[derive(Debug, Default)]
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    fn hold(&mut self, more: OwnedSemaphorePermit) {
        match &mut self.permit {
            Some(held) => held.merge(more),
            None => self.permit = Some(more),
        }
    }
}

/// The state shared by every door.
#[derive(Debug)]
pub struct Ingest {
    /// Limits and windows.
    pub config: IngestConfig,
    /// Back-pressure.
    pub budget: Budget,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
    tickets: AtomicU64,
    warnings: AtomicU64,
}

impl Ingest {
    /// Shared state for `config`.
    pub fn new(config: IngestConfig) -> Ingest {
        Ingest {
            budget: Budget::new(config.max_inflight_bytes),
            config,
            metrics: Arc::new(Metrics::new()),
            tickets: AtomicU64::new(1),
            warnings: AtomicU64::new(0),
        }
    }

    /// Stores `events` (which arrived at `received` as `bytes` bytes) in `repo`, durably, once
    /// per client `@id`. Blocks until the bus has them: call it off the async workers. If an
    /// `@id` is being stored by another request, waits for it up to `queue_timeout`.
    pub fn store(
        &self,
        door: Door,
        repo: &Repository,
        mut events: Vec<Event>,
        bytes: usize,
        received: Instant,
    ) -> Result<Stored, StoreError> {
        if events.is_empty() {
            return Ok(Stored::default());
        }
        let result = loop {
            match self.store_once(repo, &mut events) {
                Err(StoreError::Busy(_)) if received.elapsed() < self.config.queue_timeout => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other,
            }
        };
        match &result {
            Ok(s) => {
                self.metrics.stored(door, &repo.name, s.events, bytes);
                self.metrics.duplicates(&repo.name, s.duplicates);
                self.metrics.ack(door, received.elapsed().as_secs_f64());
            }
            Err(StoreError::Busy(_)) => {}
            Err(StoreError::Bus(e)) => {
                tracing::error!(repository = %repo.name, error = %e, "the bus could not store events");
            }
        }
        result
    }

    /// Parses lines from a TCP or UDP listener and stores the good ones; bad lines are counted
    /// and logged (there is no one to answer).
    pub fn store_lines(
        &self,
        door: Door,
        repo: &Repository,
        listener: &ListenerConfig,
        lines: Vec<String>,
        bytes: usize,
        received: Instant,
    ) -> Result<Stored, StoreError> {
        let now = eddy_log::now_ns();
        let mut events = Vec::with_capacity(lines.len());
        for line in &lines {
            match listener.parser.parse(line, now) {
                Ok(mut e) => {
                    add_tags(&mut e, &listener.tags);
                    events.push(e);
                }
                Err(e) => {
                    self.metrics
                        .rejected(door, &repo.name, RejectReason::Parse, 1);
                    self.warn_sometimes(|| {
                        tracing::warn!(listener = %listener.listen, error = %e, line = %truncate(line, 200), "rejected a line that does not parse");
                    });
                }
            }
        }
        self.drop_refused(door, repo, &mut events);
        let tried = events.len();
        let result = self.store(door, repo, events, bytes, received);
        if result.is_err() {
            self.metrics
                .rejected(door, &repo.name, RejectReason::Bus, tried);
        }
        result
    }

    /// Drops (counting and logging them) the events that do not fit the repository's schema:
    /// a listener has no one to answer.
    fn drop_refused(&self, door: Door, repo: &Repository, events: &mut Vec<Event>) {
        let refused = match repo.refused(events) {
            Ok(r) => r,
            Err(e) => {
                self.warn_sometimes(|| tracing::warn!(repository = %repo.name, error = %e, "rejected events: the gatekeeper has nothing to check them against"));
                (0..events.len()).map(|i| (i, Vec::new())).collect()
            }
        };
        if refused.is_empty() {
            return;
        }
        self.metrics
            .rejected(door, &repo.name, RejectReason::Schema, refused.len());
        if let Some((_, why)) = refused.first().filter(|(_, why)| !why.is_empty()) {
            self.warn_sometimes(|| tracing::warn!(repository = %repo.name, refused = refused.len(), reason = %why[0], "rejected events that do not fit the schema"));
        }
        let mut refused = refused.iter().map(|(i, _)| *i).peekable();
        let mut index = 0;
        events.retain(|_| {
            let drop = refused.next_if_eq(&index).is_some();
            index += 1;
            !drop
        });
    }

    /// Logs the 1st, 2nd, 4th, 8th… occurrence: a flood of bad lines must not flood the log.
    pub fn warn_sometimes(&self, log: impl FnOnce()) {
        let n = self.warnings.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            log();
        }
    }

    fn store_once(&self, repo: &Repository, events: &mut Vec<Event>) -> Result<Stored, StoreError> {
        let total = events.len();
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        if events.iter().any(|e| e.id_from_client) {
            let ids: Vec<Option<Uuid>> = events
                .iter()
                .map(|e| e.id_from_client.then_some(e.id))
                .collect();
            let keep = match lock(&repo.dedup).reserve(&ids, ticket, eddy_log::now_ns()) {
                Reservation::Keep(keep) => keep,
                Reservation::Busy(id) => return Err(StoreError::Busy(id)),
            };
            let mut keep = keep.into_iter();
            events.retain(|_| keep.next().unwrap_or(true));
        }
        let reserved: Vec<Uuid> = events
            .iter()
            .filter(|e| e.id_from_client)
            .map(|e| e.id)
            .collect();
        let stored = events.len();
        if stored > 0 {
            let records = self.records(repo, events);
            events.clear();
            if let Err(e) = repo.topic.produce(records, PartitionChoice::ByKey) {
                lock(&repo.dedup).release(reserved);
                return Err(e.into());
            }
            if !reserved.is_empty() {
                lock(&repo.dedup).commit(reserved, eddy_log::now_ns());
            }
        }
        Ok(Stored {
            events: stored,
            duplicates: total - stored,
        })
    }

    fn records(&self, repo: &Repository, events: &[Event]) -> Vec<Record> {
        let keys: Vec<Option<String>> = {
            let mut grouping = lock(&repo.grouping);
            events
                .iter()
                .map(|e| (!e.tags.is_empty()).then(|| grouping.key(&e.tags)))
                .collect()
        };
        events
            .iter()
            .zip(keys)
            .map(|(e, key)| {
                let r = Record::new(codec::encode(e)).with_timestamp(e.timestamp);
                match key {
                    Some(k) => r.with_key(k),
                    None => r,
                }
            })
            .collect()
    }
}

/// Adds a listener's configured tags to an event (tags the event already has win).
pub fn add_tags(event: &mut Event, tags: &BTreeMap<String, String>) {
    for (k, v) in tags {
        event.tags.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_bytes_in_flight_and_gives_up_after_the_timeout() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = Budget::new(100);
            let a = budget.acquire(60).await;
            assert_eq!(budget.usage(), (60, 100));
            assert!(budget
                .acquire_within(50, Duration::from_millis(20))
                .await
                .is_none());
            // Larger than the whole budget: waits for all of it rather than forever.
            drop(a);
            let all = budget
                .acquire_within(1000, Duration::from_millis(20))
                .await
                .unwrap();
            assert_eq!(all.num_permits(), 100);
            drop(all);
            assert_eq!(budget.usage(), (0, 100));
        });
    }

    #[test]
    fn a_charge_grows_as_bytes_arrive_and_never_past_the_whole_budget() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = Budget::new(100);
            let mut slow = Charge::default();
            // Twelve slow bodies that sent 5 bytes each hold 60, not what they declared.
            let mut others: Vec<Charge> = (0..11).map(|_| Charge::default()).collect();
            assert!(budget.try_charge(&mut slow, 5));
            for c in &mut others {
                assert!(budget.try_charge(c, 5));
            }
            assert_eq!(budget.usage(), (60, 100));
            // A fast request still finds room for its 40 bytes.
            let mut fast = Charge::default();
            assert!(budget.charge(&mut fast, 40, Duration::ZERO).await);
            assert_eq!(fast.bytes(), 40);
            // Full: one more byte waits, then gives up.
            assert!(!budget.try_charge(&mut slow, 1));
            assert!(!budget.charge(&mut slow, 1, Duration::from_millis(10)).await);
            drop(others);
            drop(fast);
            // A charge is capped at the whole budget instead of waiting forever.
            assert!(
                budget
                    .charge(&mut slow, 1000, Duration::from_millis(10))
                    .await
            );
            assert_eq!(slow.bytes(), 100);
            assert!(budget.try_charge(&mut slow, 1));
            drop(slow);
            assert_eq!(budget.usage(), (0, 100));
        });
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
