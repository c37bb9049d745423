//! A repository as the doors see it: its topic, store, gatekeeper, de-duplication window and
//! tag grouping, and the digest that seals its events into segments.

use std::path::Path;
use std::sync::{Arc, Mutex};

use eddy_base::sync::lock;
use eddy_event::{codec, Event};
use eddy_log::{Bus, Log, Topic, TopicConfig};
use eddy_schema::avro_json::Rejection;
use eddy_schema::gate::{Gate, GateError};
use eddy_schema::Registry;
use eddy_store::{Digest, RepoStore};
use uuid::Uuid;

use crate::config::{topic_of, IngestConfig, RepositoryConfig};
use crate::dedup::DedupWindow;
use crate::grouping::TagGrouping;
use crate::lag::LagBoard;
use crate::metrics::RepositoryGauges;
use crate::spread::Spreading;
use crate::IngestError;

/// A repository as the doors see it.
#[derive(Debug)]
pub struct Repository {
    /// Its name.
    pub name: String,
    /// Its topic in the embedded log: the events themselves when the log is the bus (every
    /// reader of events, the stream runtime included, goes through `bus`, by this name).
    pub topic: Arc<Topic>,
    /// The bus its events are produced to and digested from: the embedded log itself, or Kafka
    /// in a cluster (a topic of the same name).
    pub bus: Arc<dyn Bus>,
    /// Its settings.
    pub config: RepositoryConfig,
    /// Its segments and work in progress.
    pub store: Arc<RepoStore>,
    /// The gatekeeper, when the repository is bound to a schema subject.
    pub gate: Option<Gate>,
    digest: Mutex<Option<Digest>>,
    digest_stats: Arc<eddy_store::digest::DigestStats>,
    pub(crate) dedup: Mutex<DedupWindow>,
    pub(crate) grouping: Mutex<TagGrouping>,
    /// Its data sources' spread over partitions (the lag rule).
    pub spreading: Spreading,
    /// Its consumer lag, as last read.
    pub lag: LagBoard,
    /// The partition of the next request's events without a data source (round robin).
    pub(crate) unkeyed: std::sync::atomic::AtomicU32,
}

/// How a door parses one line: [`eddy_event::Parser::parse`] or
/// [`eddy_event::Parser::parse_for_bus`].
pub type ParseLine = fn(eddy_event::Parser, &str, i64) -> Result<Event, eddy_event::ParseError>;

impl Repository {
    /// How its doors parse a line: with the fields only where a gatekeeper reads them; the bus
    /// keeps no fields its readers can derive again from the raw text.
    pub fn line_parse(&self) -> ParseLine {
        match self.gate {
            None => eddy_event::Parser::parse_for_bus,
            Some(_) => eddy_event::Parser::parse,
        }
    }

    /// Opens (creating if needed) the repository's topic and store, re-reads the ids it stored
    /// within the de-duplication window (so a retry after a restart is still recognised), and
    /// starts its digest. `bus` is where its events go: `log` itself, or Kafka.
    pub fn open(
        log: &Arc<Log>,
        bus: &Arc<dyn Bus>,
        registry: &Arc<Registry>,
        name: &str,
        config: RepositoryConfig,
        ingest: &IngestConfig,
        store_root: &Path,
    ) -> Result<Repository, IngestError> {
        let gate = match &config.schema {
            Some(s) => Some(Gate::new(
                registry.clone(),
                s.binding().map_err(|e| IngestError::InvalidRepository {
                    problems: vec![format!("repositories.{name}.{e}")],
                })?,
            )),
            None => None,
        };
        let at = format!("repositories.{name}");
        let invalid = |problems| IngestError::InvalidRepository { problems };
        let topic = log.topic_or_create(
            &topic_of(name),
            config
                .bus_topic_config(
                    &at,
                    TopicConfig {
                        partitions: config.partitions,
                        ..TopicConfig::default()
                    },
                )
                .map_err(invalid)?,
        )?;
        // A topic made by an older version (or with other settings) takes the current ones:
        // above all the digest's group as the floor of retention.
        let wanted = config
            .bus_topic_config(&at, (*topic.config()).clone())
            .map_err(invalid)?;
        if *topic.config() != wanted {
            log.reconfigure_topic(topic.name(), wanted)?;
        }
        let partitions = bus.ensure_topic(topic.name(), &topic.config())?;
        let store_config = config.store_config(&at).map_err(invalid)?;
        let store = Arc::new(RepoStore::open(name, &store_root.join(name), store_config)?);
        let digest = config
            .digest
            .then(|| Digest::start(bus.clone(), topic.name(), store.clone()));
        if partitions != config.partitions {
            tracing::warn!(
                repository = %name,
                configured = config.partitions,
                actual = partitions,
                "the partition count of an existing repository cannot change; keeping the existing one"
            );
        }
        let window_ns = i64::try_from(ingest.dedup_window.as_nanos()).unwrap_or(i64::MAX);
        let dedup = recent_client_ids(&topic, window_ns, ingest.dedup_max_ids);
        Ok(Repository {
            name: name.to_string(),
            grouping: Mutex::new(TagGrouping::new(config.max_tag_values, config.tag_buckets)),
            topic,
            bus: bus.clone(),
            config,
            store,
            gate,
            spreading: Spreading::new(name, ingest.lag_rule(), partitions),
            lag: LagBoard::default(),
            digest_stats: digest.as_ref().map(|d| d.stats.clone()).unwrap_or_default(),
            digest: Mutex::new(digest),
            dedup: Mutex::new(dedup),
            unkeyed: Default::default(),
        })
    }

    /// The events that do not fit the repository's schema, by index, each with its reasons
    /// (none without a gate). Those that fit an Avro schema get the fields it gives a default
    /// and they lack, as binary datums of the subject do.
    pub fn refused(&self, events: &mut [Event]) -> Result<Vec<(usize, Vec<Rejection>)>, GateError> {
        let Some(gate) = &self.gate else {
            return Ok(Vec::new());
        };
        let contract = gate.contract()?;
        let checker = contract.checker();
        let mut refused = Vec::new();
        for (i, e) in events.iter_mut().enumerate() {
            match checker.resolve(as_json(e)) {
                Ok(Some(resolved)) => fill_defaults(e, resolved),
                Ok(None) => {}
                Err(why) => refused.push((i, why)),
            }
        }
        Ok(refused)
    }

    /// The counters and progress of this node's digest of the repository (at zero when it
    /// runs none).
    pub fn digest_stats(&self) -> &eddy_store::digest::DigestStats {
        &self.digest_stats
    }

    /// Where this node's digest is in each partition it digests.
    pub fn digest_progress(
        &self,
    ) -> std::collections::BTreeMap<u32, eddy_store::progress::PartitionProgress> {
        self.digest_stats.progress.partitions()
    }

    /// Stops the digest (its work in progress stays in the bus, to be rebuilt at start).
    pub fn stop_digest(&self) {
        if let Some(d) = lock(&self.digest).take() {
            d.stop();
        }
    }

    /// The repository's gauges, read now for the metrics.
    pub fn gauges(&self) -> RepositoryGauges {
        let damage: Vec<eddy_log::Damage> = self
            .topic
            .partitions()
            .iter()
            .flat_map(|p| p.damage())
            .collect();
        RepositoryGauges {
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
/// Adds to `event` the top-level fields of `resolved` (its datum under the schema) that it
/// lacks: the schema's defaults.
fn fill_defaults(event: &mut Event, resolved: serde_json::Value) {
    let serde_json::Value::Object(fields) = resolved else {
        return;
    };
    for (name, value) in fields {
        let nested = format!("{name}.");
        let present = event.fields.contains_key(&name)
            || event
                .fields
                .range(nested.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&nested));
        if !present {
            eddy_event::flatten_json(value, &name, &mut event.fields);
            // The fields are no longer what the parser makes of the raw line.
            event.parsed_by = None;
        }
    }
}

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
