//! The digest: one thread per bus partition of a repository that its consumer group gives this
//! node, reading from the offset the group committed, adding events to their data source's work in progress, and
//! committing only offsets whose events are all in sealed segments.
//!
//! After a crash it starts again from the committed offset: events that a sealed segment
//! already holds (a data source sealed past the commit point) are skipped by the catalogue's
//! watermark, the rest rebuild the work in progress. Nothing is lost, nothing is stored twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_base::sync::lock;
use eddy_event::codec::{self, FieldsRef};
use eddy_log::Bus;

use crate::store::RepoStore;

/// The consumer group of every digest; repository topics keep their data until it commits.
pub const GROUP: &str = "digest";

/// How long a partition's bus stays quiet before the digest writes the open blocks of its
/// work in progress (see [`RepoStore::close_quiet_blocks`]): data that arrived in one burst is
/// then compressed on disk seconds later, not only when a block fills or the segment seals.
pub const QUIET_BEFORE_CLOSING_BLOCKS: Duration = Duration::from_secs(2);

/// The data source of a bus record: its key (none, or not UTF-8: the empty source).
pub fn source_of(key: Option<&[u8]>) -> &str {
    key.map_or("", |k| std::str::from_utf8(k).unwrap_or(""))
}

/// A bus record as the digest stores it: a parsed event whose record wrote its fields
/// (format 2) keeps them encoded (its parser gives them back when the block is read, so only
/// their values are tokenised); one whose record left them to its parser comes without fields,
/// and the block builder has its parser derive them into a buffer it keeps (see
/// [`crate::block::BlockBuilder::push_with`]; a map per event cost a quarter of the digest);
/// another's fields are decoded, which checks their text, since the block keeps them.
pub(crate) fn decode_record(
    value: &[u8],
) -> Result<(eddy_event::Event, Option<codec::EncodedFields<'_>>), eddy_event::wire::DecodeError> {
    let (mut event, fields) = codec::decode_lazily(value)?;
    match (event.parsed_by, fields) {
        (Some(_), Some(fields)) => Ok((event, Some(fields))),
        (_, None) => Ok((event, None)),
        (None, Some(fields)) => {
            event.fields = fields.to_map()?;
            Ok((event, None))
        }
    }
}

/// Counters of a running digest.
#[derive(Debug, Default)]
pub struct DigestStats {
    /// Events added to work in progress.
    pub events: AtomicU64,
    /// Bytes of encoded events read from the bus.
    pub bytes: AtomicU64,
    /// Records that are not events (skipped, with a warning).
    pub undecodable: AtomicU64,
    /// Records the bus could not give back because its files are damaged (skipped, with a
    /// warning naming the file, bytes and offsets).
    pub unreadable: AtomicU64,
}

/// A repository's running digest: a member of the bus's consumer group [`GROUP`] for the
/// repository's topic, with one thread per partition the group gives it. On the embedded log
/// that is every partition; on Kafka the partitions are shared among the digest nodes and move
/// when nodes come and go.
#[derive(Debug)]
pub struct Digest {
    stop: Arc<AtomicBool>,
    member: Option<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<DigestStats>,
}

/// The per-partition threads of a digest, by partition.
type Workers = Arc<Mutex<BTreeMap<u32, (Arc<AtomicBool>, JoinHandle<()>)>>>;

impl Digest {
    /// Starts digesting `topic` of `bus` into `store`.
    pub fn start(bus: Arc<dyn Bus>, topic: &str, store: Arc<RepoStore>) -> Digest {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(DigestStats::default());
        let membership = Membership {
            bus,
            topic: topic.to_string(),
            store,
            stop: stop.clone(),
            stats: stats.clone(),
            workers: Workers::default(),
        };
        let name = format!("digest-{}", membership.store.name());
        let member = std::thread::Builder::new()
            .name(name)
            .spawn(move || membership.run());
        let member = match member {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!("cannot start a digest thread: {e}");
                None
            }
        };
        Digest {
            stop,
            member,
            stats,
        }
    }

    /// Stops the threads (work in progress stays unsealed: the bus still holds it).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.member {
            let _ = t.join();
        }
    }
}

/// The digest's place in the consumer group: it starts a worker for each partition it is given
/// and stops it (dropping that partition's work in progress) when the partition is taken away.
struct Membership {
    bus: Arc<dyn Bus>,
    topic: String,
    store: Arc<RepoStore>,
    stop: Arc<AtomicBool>,
    stats: Arc<DigestStats>,
    workers: Workers,
}

impl Membership {
    fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(e) = self.member_round() {
                // The group may give this node's partitions to another while it is out.
                self.leave_all();
                tracing::error!(
                    repository = self.store.name(),
                    topic = self.topic,
                    "the digest lost its place in the bus's consumer group, joining again in 1 s: {e}"
                );
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let all: Vec<u32> = lock(&self.workers).keys().copied().collect();
        stop_workers(&self.workers, &all);
    }

    /// Stops every worker and drops their partitions' work in progress.
    fn leave_all(&self) {
        let all: Vec<u32> = lock(&self.workers).keys().copied().collect();
        stop_workers(&self.workers, &all);
        for p in all {
            if let Err(e) = self.store.forget_partition(p) {
                tracing::error!(repository = self.store.name(), partition = p, "{e}");
            }
        }
    }

    fn member_round(&self) -> Result<(), RoundError> {
        self.check_epoch()?;
        let (workers, bus, topic, store, stop, stats) = (
            self.workers.clone(),
            self.bus.clone(),
            self.topic.clone(),
            self.store.clone(),
            self.stop.clone(),
            self.stats.clone(),
        );
        let on_change = move |change: eddy_log::Membership| match change {
            eddy_log::Membership::Assigned(partitions) => {
                for partition in partitions {
                    if lock(&workers).contains_key(&partition) {
                        continue;
                    }
                    let worker = Worker {
                        bus: bus.clone(),
                        topic: topic.clone(),
                        store: store.clone(),
                        partition,
                        stop: Arc::new(AtomicBool::new(false)),
                        all_stop: stop.clone(),
                        stats: stats.clone(),
                    };
                    let own_stop = worker.stop.clone();
                    let thread = std::thread::Builder::new()
                        .name(format!("digest-{}-{partition}", store.name()))
                        .spawn(move || worker.run());
                    match thread {
                        Ok(t) => {
                            lock(&workers).insert(partition, (own_stop, t));
                        }
                        Err(e) => tracing::error!("cannot start a digest thread: {e}"),
                    }
                }
            }
            eddy_log::Membership::Revoked(partitions) => {
                // Stopped before returning, so the next owner never overlaps this node.
                stop_workers(&workers, &partitions);
                for p in partitions {
                    if let Err(e) = store.forget_partition(p) {
                        tracing::error!(
                            repository = store.name(),
                            partition = p,
                            "cannot drop the work in progress of a partition that moved: {e}"
                        );
                    }
                }
            }
        };
        let mut member = self.bus.join(GROUP, &self.topic, Box::new(on_change))?;
        while !self.stop.load(Ordering::Relaxed) {
            member.poll(Duration::from_millis(200))?;
        }
        Ok(())
    }

    /// A bus whose storage was reset counts offsets from 0 again: the store must not take them
    /// for the ones it sealed before (Humio's lesson: a Kafka reset silently skipped data).
    fn check_epoch(&self) -> Result<(), RoundError> {
        let epoch = self.bus.epoch()?;
        if self.store.adopt_bus_epoch(&epoch)? {
            tracing::warn!(
                repository = self.store.name(),
                epoch,
                "the bus was reset (its epoch changed): offsets recorded before no longer apply; \
                 digesting the new bus from its start"
            );
        }
        Ok(())
    }
}

/// Stops the workers of `partitions` and waits for them.
fn stop_workers(workers: &Workers, partitions: &[u32]) {
    let stopped: Vec<_> = {
        let mut w = lock(workers);
        partitions.iter().filter_map(|p| w.remove(p)).collect()
    };
    for (stop, _) in &stopped {
        stop.store(true, Ordering::Relaxed);
    }
    for (_, thread) in stopped {
        let _ = thread.join();
    }
}

/// Why a digest round stopped.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Bus(#[from] eddy_log::Error),
    #[error(transparent)]
    Store(#[from] crate::segment::SegmentError),
}

/// The digest of one partition, on its own thread.
struct Worker {
    bus: Arc<dyn Bus>,
    topic: String,
    store: Arc<RepoStore>,
    partition: u32,
    /// This worker's own stop (its partition moved away) ...
    stop: Arc<AtomicBool>,
    /// ... and the whole digest's.
    all_stop: Arc<AtomicBool>,
    stats: Arc<DigestStats>,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.all_stop.load(Ordering::Relaxed)
    }

    fn run(&self) {
        while !self.stopped() {
            match self.round() {
                Ok(()) => return,
                Err(e) => {
                    // Stay alive: the next round starts again from the committed offset.
                    tracing::error!(
                        repository = self.store.name(),
                        partition = self.partition,
                        "digest failed, retrying in 1 s: {e}"
                    );
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Digests from the committed offset until stopped or until something fails.
    fn round(&self) -> Result<(), RoundError> {
        let (bus, topic, store, partition) = (&self.bus, &self.topic, &self.store, self.partition);
        // Sealed segments may hold offsets the bus lost on disk since (a crash between sealing
        // and committing, then a tail cut short): the bus must not hand them out again.
        let catalogue = store.catalogue();
        let sealed = catalogue
            .sealed_upto
            .iter()
            .filter(|((p, _), _)| *p == partition)
            .map(|(_, &upto)| upto + 1)
            .max();
        if let Some(past_sealed) = sealed {
            bus.never_reuse_below(topic, partition, past_sealed)?;
        }
        let (start, _) = bus.offsets(topic, partition)?;
        let committed = bus.committed(GROUP, topic, partition)?;
        // Damage the reader meets lies past what is sealed, so its records are not in the store:
        // they are skipped (the reader names them) and counted.
        let mut reader =
            bus.reader_skipping_damage(topic, partition, committed.unwrap_or(start).max(start))?;
        let mut counted_unreadable = 0;
        store.note_digested(partition, reader.position());
        let mut last_commit = committed;
        let mut appender = store.appender(partition);
        // Since when the bus has given nothing, and whether the open blocks were written since.
        let (mut quiet_since, mut closed_while_quiet) = (Instant::now(), false);
        while !self.stopped() {
            let records = reader.poll(Duration::from_millis(200))?;
            if !records.is_empty() {
                (quiet_since, closed_while_quiet) = (Instant::now(), false);
            } else if !closed_while_quiet && quiet_since.elapsed() >= QUIET_BEFORE_CLOSING_BLOCKS {
                store.close_quiet_blocks(partition)?;
                closed_while_quiet = true;
            }
            if reader.skipped() > counted_unreadable {
                let lost = reader.skipped() - counted_unreadable;
                counted_unreadable = reader.skipped();
                self.stats.unreadable.fetch_add(lost, Ordering::Relaxed);
                tracing::error!(
                    repository = store.name(),
                    partition,
                    records = lost,
                    "the digest could not read damaged bus data; those records are not in the store"
                );
            }
            let (mut events, mut bytes) = (0, 0);
            for r in &records {
                bytes += r.value.len() as u64;
                let (event, encoded) = match decode_record(&r.value) {
                    Ok(e) => e,
                    Err(e) => {
                        self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            topic,
                            partition,
                            offset = r.offset,
                            "not an event, skipped: {e}"
                        );
                        continue;
                    }
                };
                let source = source_of(r.key.as_deref());
                appender.append(
                    r.offset,
                    source,
                    &event,
                    encoded.map_or(FieldsRef::Map(&event.fields), FieldsRef::Encoded),
                )?;
                events += 1;
            }
            // Once per poll: the threads of a digest share these counters.
            self.stats.events.fetch_add(events, Ordering::Relaxed);
            self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
            store.note_digested(partition, reader.position());
            store.seal_due(partition)?;
            let commit = store.commit_point(partition).unwrap_or(reader.position());
            if last_commit != Some(commit) {
                bus.commit(GROUP, topic, &[(partition, commit)])?;
                last_commit = Some(commit);
            }
        }
        Ok(())
    }
}
