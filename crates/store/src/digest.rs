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
use eddy_log::{Bus, LaidOutBatch, Polled, RecordLayout, StoredRecord};

use crate::bus_block::{BusBlock, StoreBlockLayout};
use crate::progress::Observed;
use crate::sealed_marks::{self, SealedMark};
use crate::store::Appender;
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
    let mut event = eddy_event::Event::new(0);
    let fields = decode_record_into(value, &mut event)?;
    Ok((event, fields))
}

/// [`decode_record`] into `event`, whose memory is reused from record to record (see
/// [`codec::decode_lazily_into`]); on an error `event` is not to be used.
pub(crate) fn decode_record_into<'b>(
    value: &'b [u8],
    event: &mut eddy_event::Event,
) -> Result<Option<codec::EncodedFields<'b>>, eddy_event::wire::DecodeError> {
    let fields = codec::decode_lazily_into(value, event)?;
    match (event.parsed_by, fields) {
        (Some(_), Some(fields)) => Ok(Some(fields)),
        (_, None) => Ok(None),
        (None, Some(fields)) => {
            event.fields = fields.to_map()?;
            Ok(None)
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
    /// Where each partition's worker is and the latency it sees.
    pub progress: crate::progress::DigestProgress,
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
type Workers = Mutex<BTreeMap<u32, (Arc<AtomicBool>, JoinHandle<()>)>>;

impl Digest {
    /// Starts digesting `topic` of `bus` into `store`.
    pub fn start(bus: Arc<dyn Bus>, topic: &str, store: Arc<RepoStore>) -> Digest {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(DigestStats::default());
        if bus.shared() {
            store.hold_seals_until_published();
        }
        let membership = Membership(Arc::new(Crew {
            bus,
            topic: topic.to_string(),
            store,
            stop: stop.clone(),
            stats: stats.clone(),
            workers: Workers::default(),
        }));
        let member = std::thread::Builder::new()
            .name(format!("digest-{}", membership.0.store.name()))
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

/// What the membership thread and the workers of one digest share.
struct Crew {
    bus: Arc<dyn Bus>,
    topic: String,
    store: Arc<RepoStore>,
    /// The whole digest's stop.
    stop: Arc<AtomicBool>,
    stats: Arc<DigestStats>,
    workers: Workers,
}

impl Crew {
    /// Starts a worker for each of `partitions` that has none.
    fn start_workers(self: &Arc<Crew>, partitions: Vec<u32>) {
        for partition in partitions {
            if lock(&self.workers).contains_key(&partition) {
                continue;
            }
            let worker = Worker {
                crew: self.clone(),
                partition,
                stop: Arc::new(AtomicBool::new(false)),
            };
            let own_stop = worker.stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("digest-{}-{partition}", self.store.name()))
                .spawn(move || worker.run());
            match thread {
                Ok(t) => {
                    lock(&self.workers).insert(partition, (own_stop, t));
                }
                Err(e) => tracing::error!("cannot start a digest thread: {e}"),
            }
        }
    }

    /// Stops the workers of `partitions` (all with `None`), waits for them, and returns their
    /// partitions.
    fn stop_workers(&self, partitions: Option<&[u32]>) -> Vec<u32> {
        let stopped: Vec<_> = {
            let mut w = lock(&self.workers);
            match partitions {
                Some(ps) => ps.iter().filter_map(|p| w.remove_entry(p)).collect(),
                None => std::mem::take(&mut *w).into_iter().collect(),
            }
        };
        for (_, (stop, _)) in &stopped {
            stop.store(true, Ordering::Relaxed);
        }
        stopped
            .into_iter()
            .map(|(p, (_, thread))| {
                let _ = thread.join();
                p
            })
            .collect()
    }

    /// Stops the workers of `partitions` (all with `None`) and drops those partitions' work in
    /// progress: they are another member's now, which digests them again from the committed
    /// offset.
    fn release(&self, partitions: Option<&[u32]>) {
        for p in self.stop_workers(partitions) {
            if let Err(e) = self.store.forget_partition(p) {
                tracing::error!(
                    repository = self.store.name(),
                    partition = p,
                    "cannot drop the work in progress of a partition that moved: {e}"
                );
            }
            // A seal whose mark the bus never acknowledged: the next owner may digest it again.
            if let Err(e) = self.settle_unpublished(Some(p)) {
                tracing::error!(
                    repository = self.store.name(),
                    partition = p,
                    "cannot settle the unpublished segments of a partition that moved (settled at \
                     the next start): {e}"
                );
            }
        }
    }

    /// Confirms or drops the unpublished segments of `partition` (all with `None`) by the marks
    /// the bus holds (see [`crate::sealed_marks`]). On a bus no other node digests there is
    /// nobody to tell: what is listed is confirmed.
    fn settle_unpublished(&self, partition: Option<u32>) -> Result<(), RoundError> {
        if !self.bus.shared() {
            self.store.settle_unpublished(partition, |_| true)?;
            return Ok(());
        }
        let me = self.store.identity()?;
        let partitions = match partition {
            Some(p) => vec![p],
            None => self.store.partitions_with_unpublished(),
        };
        for p in partitions {
            let marks = sealed_marks::read(&*self.bus, &self.topic, p)?;
            let dropped = self.store.settle_unpublished(Some(p), |id| {
                marks.iter().any(|m| m.store == me && m.segment == id)
            })?;
            if !dropped.is_empty() {
                tracing::warn!(
                    repository = self.store.name(),
                    partition = p,
                    segments = ?dropped,
                    "dropped segments sealed without their mark reaching the bus: the partition's \
                     next owner digests those events again"
                );
            }
        }
        if partition.is_none() {
            // Listed segments whose file was never written.
            self.store.settle_unpublished(None, |_| true)?;
        }
        Ok(())
    }
}

/// The digest's place in the consumer group: it starts a worker for each partition it is given
/// and releases it when the partition is taken away.
struct Membership(Arc<Crew>);

impl Membership {
    fn run(self) {
        let crew = &self.0;
        while !crew.stop.load(Ordering::Relaxed) {
            if let Err(e) = self.member_round() {
                // The group may give this node's partitions to another while it is out.
                crew.release(None);
                tracing::error!(
                    repository = crew.store.name(),
                    topic = crew.topic,
                    "the digest lost its place in the bus's consumer group, joining again in 1 s: {e}"
                );
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // The work in progress stays: the bus still holds it, and scans still see it.
        crew.stop_workers(None);
    }

    fn member_round(&self) -> Result<(), RoundError> {
        let crew = &self.0;
        self.check_epoch()?;
        if crew.bus.shared() {
            let partitions = crew.bus.partition_count(&crew.topic)?;
            sealed_marks::ensure_topic(&*crew.bus, &crew.topic, partitions)?;
        }
        // No worker runs yet: what a crash left unpublished is decided before anything reads.
        crew.settle_unpublished(None)?;
        let handler = crew.clone();
        let on_change = move |change: eddy_log::Membership| match change {
            eddy_log::Membership::Assigned(partitions) => handler.start_workers(partitions),
            // Released before returning, so the next owner never overlaps this node.
            eddy_log::Membership::Revoked(partitions) => handler.release(Some(&partitions)),
        };
        let mut member = crew.bus.join(GROUP, &crew.topic, Box::new(on_change))?;
        while !crew.stop.load(Ordering::Relaxed) {
            member.poll(Duration::from_millis(200))?;
        }
        Ok(())
    }

    /// A bus whose storage was reset counts offsets from 0 again: the store must not take them
    /// for the ones it sealed before (Humio's lesson: a Kafka reset silently skipped data).
    fn check_epoch(&self) -> Result<(), RoundError> {
        let crew = &self.0;
        let epoch = crew.bus.epoch()?;
        if crew.store.adopt_bus_epoch(&epoch)? {
            tracing::warn!(
                repository = crew.store.name(),
                epoch,
                "the bus was reset (its epoch changed): offsets recorded before no longer apply; \
                 digesting the new bus from its start"
            );
        }
        Ok(())
    }
}

impl Worker {
    /// Gives the bus the marks of this partition's unpublished segments, oldest first, each
    /// confirmed once the bus acknowledged it; the commit point stays below those not yet.
    fn publish_seals(&self) -> Result<(), RoundError> {
        let Crew {
            bus, topic, store, ..
        } = &*self.crew;
        let unpublished = store.unpublished(self.partition);
        if unpublished.is_empty() {
            return Ok(());
        }
        let me = store.identity()?;
        for info in unpublished {
            if bus.shared() {
                let mark = SealedMark {
                    store: me.clone(),
                    segment: info.id,
                    source: info.source.clone(),
                    first: info.first_offset,
                    upto: info.last_offset,
                };
                sealed_marks::publish(&**bus, topic, self.partition, &mark)?;
            }
            store.confirm_published(info.id)?;
        }
        Ok(())
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
    crew: Arc<Crew>,
    partition: u32,
    /// This worker's own stop (its partition moved away); the crew's stops the whole digest.
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.crew.stop.load(Ordering::Relaxed)
    }

    fn run(&self) {
        while !self.stopped() {
            match self.round() {
                Ok(()) => return,
                Err(e) => {
                    // Stay alive: the next round starts again from the committed offset.
                    tracing::error!(
                        repository = self.crew.store.name(),
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
        let Crew {
            bus,
            topic,
            store,
            stats,
            ..
        } = &*self.crew;
        let partition = self.partition;
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
        if bus.shared() {
            // What other nodes sealed of this partition, and what this one left undecided.
            let marks = sealed_marks::read(&**bus, topic, partition)?;
            let me = store.identity()?;
            store.settle_unpublished(Some(partition), |id| {
                marks.iter().any(|m| m.store == me && m.segment == id)
            })?;
            store.adopt_sealed_elsewhere(partition, &marks, &me);
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
        // One event's memory for every record (see `decode_record_into`).
        let mut event = eddy_event::Event::new(0);
        // Since when the bus has given nothing, and whether the open blocks were written since.
        let (mut quiet_since, mut closed_while_quiet) = (Instant::now(), false);
        while !self.stopped() {
            let polled = reader.poll_laid_out(Duration::from_millis(200))?;
            if !polled.is_empty() {
                (quiet_since, closed_while_quiet) = (Instant::now(), false);
            } else if !closed_while_quiet && quiet_since.elapsed() >= QUIET_BEFORE_CLOSING_BLOCKS {
                store.close_quiet_blocks(partition)?;
                closed_while_quiet = true;
            }
            if reader.skipped() > counted_unreadable {
                let lost = reader.skipped() - counted_unreadable;
                counted_unreadable = reader.skipped();
                stats.unreadable.fetch_add(lost, Ordering::Relaxed);
                tracing::error!(
                    repository = store.name(),
                    partition,
                    records = lost,
                    "the digest could not read damaged bus data; those records are not in the store"
                );
            }
            let mut tally = Tally {
                events: 0,
                bytes: 0,
                observed: Observed::poll(polled.len()),
            };
            for p in &polled {
                match p {
                    Polled::Records(records) => {
                        for r in records {
                            let source = source_of(r.key.as_deref());
                            self.add_record(&mut appender, &mut event, r, source, &mut tally)?;
                        }
                    }
                    Polled::LaidOut(batch) => {
                        self.add_laid_out(&mut appender, &mut event, batch, &mut tally)?;
                    }
                }
            }
            let Tally {
                events,
                bytes,
                observed,
            } = tally;
            // Once per poll: the threads of a digest share these counters.
            stats.events.fetch_add(events, Ordering::Relaxed);
            stats.bytes.fetch_add(bytes, Ordering::Relaxed);
            store.note_digested(partition, reader.position());
            stats
                .progress
                .report(partition, reader.position(), observed);
            store.seal_due(partition)?;
            self.publish_seals()?;
            let commit = store.commit_point(partition).unwrap_or(reader.position());
            if last_commit != Some(commit) {
                bus.commit(GROUP, topic, &[(partition, commit)])?;
                last_commit = Some(commit);
            }
        }
        Ok(())
    }

    /// Adds one bus record's event to the store (`source` is the record's key's, borrowed
    /// from the poll for the progress report).
    fn add_record<'p>(
        &self,
        appender: &mut Appender<'_>,
        event: &mut eddy_event::Event,
        r: &StoredRecord,
        source: &'p str,
        tally: &mut Tally<'p>,
    ) -> Result<(), RoundError> {
        tally.bytes += r.value.len() as u64;
        let encoded = match decode_record_into(&r.value, event) {
            Ok(e) => e,
            Err(e) => {
                self.crew.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    topic = self.crew.topic,
                    partition = self.partition,
                    offset = r.offset,
                    "not an event, skipped: {e}"
                );
                return Ok(());
            }
        };
        tally.observed.note(source, event.ingest_timestamp);
        appender.append(
            r.offset,
            source,
            event,
            encoded.map_or(FieldsRef::Map(&event.fields), FieldsRef::Encoded),
        )?;
        tally.events += 1;
        Ok(())
    }

    /// Adds a block the door built: whole when the store holds none of its events, else
    /// event by event, as every other reader of the bus reads it.
    fn add_laid_out<'p>(
        &self,
        appender: &mut Appender<'_>,
        event: &mut eddy_event::Event,
        batch: &'p LaidOutBatch,
        tally: &mut Tally<'p>,
    ) -> Result<(), RoundError> {
        let (topic, partition) = (&self.crew.topic, self.partition);
        let skipped = |why: &dyn std::fmt::Display| {
            self.crew
                .stats
                .undecodable
                .fetch_add(u64::from(batch.record_count), Ordering::Relaxed);
            tracing::error!(
                topic,
                partition,
                offset = batch.base_offset,
                events = batch.record_count,
                "a block on the bus does not decode, its events skipped: {why}"
            );
        };
        let block = match BusBlock::decode(&batch.payload) {
            Ok(block) => block,
            Err(e) => {
                skipped(&e);
                return Ok(());
            }
        };
        let source = block.source;
        tally.observed.note(source, block.latest_ingest);
        if appender.append_block(batch.base_offset, block)? {
            tally.events += u64::from(batch.record_count);
            tally.bytes += batch.payload.len() as u64;
            return Ok(());
        }
        let records = match StoreBlockLayout.records(&batch.payload, batch.record_count) {
            Ok(records) => records,
            Err(e) => {
                skipped(&e);
                return Ok(());
            }
        };
        for (offset, r) in (batch.base_offset..).zip(records) {
            let r = StoredRecord {
                offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: Vec::new(),
            };
            self.add_record(appender, event, &r, source, tally)?;
        }
        Ok(())
    }
}

/// What one poll added, for the counters and the progress report.
struct Tally<'p> {
    events: u64,
    bytes: u64,
    observed: Observed<'p>,
}
