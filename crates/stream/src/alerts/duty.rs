//! The alert duty: which node of a cluster evaluates an alert rule, so that a cause is
//! notified once, not once per node.
//!
//! On a shared bus every node taps every partition, so every node with the same rule would
//! see the same causes. A rule's duty is held by the one member of the consumer group
//! `alert.<rule>` that owns the single partition of the topic [`DUTY_TOPIC`]: the bus itself
//! chooses among the nodes that run the rule, and moves the duty when that node leaves or
//! stops heart-beating (after the group's session timeout). Nothing is written to that topic;
//! only its ownership matters. One group per rule, so that nodes with different rules each
//! evaluate theirs, and a cluster's rules spread over the nodes that have them.
//!
//! A node that gains a duty takes over the rule's memory from the bus ([`super::memory`])
//! before it holds it: [`DutyHolder::gained`] runs first, and [`Duty::held`] turns true only
//! once it succeeded (tried again every second while it fails). A node that loses a duty
//! hears [`DutyHolder::lost`] before the bus hands the duty to another node, and work done
//! with [`Duty::while_held`] (publishing the memory) is over by then, so the next holder reads
//! the last memory published.
//!
//! On the embedded bus the process is the whole cluster: it always holds every duty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use eddy_base::sync::lock;
use eddy_log::{Bus, GroupMember, Membership, TopicConfig};

use super::memory::MemoryTopic;

/// The one-partition topic whose ownership, per rule's group, is the duty.
pub const DUTY_TOPIC: &str = "_alert_duty";

/// How often a member is polled (its heartbeat).
const POLL: Duration = Duration::from_millis(200);
/// How long a failed join, or a failed take-over of a gained duty, waits before it is tried
/// again.
const RETRY: Duration = Duration::from_secs(1);

/// The consumer group of rule `rule`'s duty.
pub fn duty_group(rule: &str) -> String {
    format!("alert.{rule}")
}

/// What a rule does as its duty comes and goes on a shared bus.
pub trait DutyHolder: Send + Sync {
    /// The bus gave this node the duty: take over the rule's memory before the first
    /// evaluation. An error is logged and the call tried again a second later; the duty is
    /// not held meanwhile.
    fn gained(self: Arc<Self>) -> Result<(), String>;

    /// The duty left this node (moved to another, or this node left): hand on what the next
    /// holder takes over, and forget it. Called before the bus hands the duty on, with no
    /// [`Duty::while_held`] work under way (so it must not call that).
    fn lost(&self);
}

/// Where the duties of a node's rules are decided: on its bus, if shared.
#[derive(Debug)]
pub struct AlertDuty {
    bus: Option<Arc<dyn Bus>>,
    memory: Option<Arc<MemoryTopic>>,
}

impl AlertDuty {
    /// The duties of a node on `bus`: always held on a bus only this process reads; elected
    /// through the bus's consumer groups on a shared one, where the rules' memories are kept
    /// on the bus too.
    pub fn for_bus(bus: &Arc<dyn Bus>) -> Arc<AlertDuty> {
        let shared = bus.shared();
        Arc::new(AlertDuty {
            bus: shared.then(|| bus.clone()),
            memory: shared.then(|| Arc::new(MemoryTopic::new(bus.clone()))),
        })
    }

    /// Takes part in the election of rule `rule`'s duty until the returned handle is dropped
    /// or left; `holder` hears when the duty comes and goes.
    pub fn take_part(&self, rule: &str, holder: Weak<dyn DutyHolder>) -> Duty {
        let duty = Duty {
            state: Arc::new(DutyState {
                held: AtomicBool::new(self.bus.is_none()),
                assigned: AtomicBool::new(false),
                gate: Mutex::new(()),
                stop: AtomicBool::new(false),
            }),
            thread: Mutex::new(None),
            memory: self.memory.clone(),
        };
        if let Some(bus) = &self.bus {
            let (bus, state) = (bus.clone(), duty.state.clone());
            let group = duty_group(rule);
            match std::thread::Builder::new()
                .name(format!("duty-{rule}"))
                .spawn(move || elect(&*bus, &group, &state, &holder))
            {
                Ok(t) => *lock(&duty.thread) = Some(t),
                Err(e) => {
                    tracing::error!(alert = %rule, "cannot start the rule's duty election: {e}")
                }
            }
        }
        duty
    }
}

/// What the election thread and the rule share.
#[derive(Debug)]
struct DutyState {
    /// This node evaluates the rule.
    held: AtomicBool,
    /// The bus gave this node the duty's partition (the memory may not be taken over yet).
    assigned: AtomicBool,
    /// Held by work only the holder may do, and by a revocation: once the duty is given up,
    /// no such work is under way or starts.
    gate: Mutex<()>,
    stop: AtomicBool,
}

impl DutyState {
    /// Gives the duty up, once any work under the gate is over.
    fn give_up(&self, holder: &Weak<dyn DutyHolder>, group: &str) {
        let _gate = lock(&self.gate);
        self.assigned.store(false, Ordering::Release);
        if self.held.swap(false, Ordering::AcqRel) {
            if let Some(h) = holder.upgrade() {
                h.lost();
            }
            tracing::info!(group, "this node gave up the alert rule's duty");
        }
    }
}

/// This node's part in one rule's duty.
#[derive(Debug)]
pub struct Duty {
    state: Arc<DutyState>,
    thread: Mutex<Option<JoinHandle<()>>>,
    memory: Option<Arc<MemoryTopic>>,
}

impl Duty {
    /// Whether this node evaluates the rule now.
    pub fn held(&self) -> bool {
        self.state.held.load(Ordering::Acquire)
    }

    /// Runs `work` if this node holds the duty, the duty staying here until it is done; `None`
    /// if it does not hold it.
    pub fn while_held<T>(&self, work: impl FnOnce() -> T) -> Option<T> {
        let _gate = lock(&self.state.gate);
        self.held().then(work)
    }

    /// Where the rule's memory is kept on a shared bus; `None` on a bus only this process reads.
    pub fn memory(&self) -> Option<&MemoryTopic> {
        self.memory.as_deref()
    }

    /// Leaves the election (on a shared bus the duty moves to another node at once).
    pub fn leave(&self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Duty {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Joins `group` and keeps the duty as the bus says, taking the memory over through `holder`
/// before holding it, until told to stop.
fn elect(bus: &dyn Bus, group: &str, state: &Arc<DutyState>, holder: &Weak<dyn DutyHolder>) {
    let mut member: Option<Box<dyn GroupMember>> = None;
    // The last take-over failure, logged once while it lasts.
    let mut failing: Option<String> = None;
    while !state.stop.load(Ordering::Relaxed) {
        let m = match member.as_mut() {
            Some(m) => m,
            None => match join(bus, group, state, holder) {
                Ok(m) => member.insert(m),
                Err(e) => {
                    tracing::warn!(group, "cannot join an alert duty's group, retrying: {e}");
                    std::thread::sleep(RETRY);
                    continue;
                }
            },
        };
        if let Err(e) = m.poll(POLL) {
            tracing::warn!(group, "an alert duty's group failed, joining again: {e}");
            state.give_up(holder, group);
            member = None;
            std::thread::sleep(RETRY);
            continue;
        }
        if !state.assigned.load(Ordering::Acquire) || state.held.load(Ordering::Acquire) {
            continue;
        }
        // Assigned but not held yet: the memory first. Membership changes come only from
        // `poll` on this thread, so none can slip in between.
        let Some(h) = holder.upgrade() else {
            continue;
        };
        match h.gained() {
            Ok(()) => {
                failing = None;
                let _gate = lock(&state.gate);
                state.held.store(true, Ordering::Release);
                tracing::info!(
                    group,
                    "this node took the alert rule's duty: it evaluates the rule"
                );
            }
            Err(e) => {
                if failing.as_deref() != Some(e.as_str()) {
                    tracing::warn!(
                        group,
                        "this node was given the alert rule's duty but cannot take its memory over, retrying: {e}"
                    );
                }
                failing = Some(e);
                std::thread::sleep(RETRY);
            }
        }
    }
    state.give_up(holder, group);
}

fn join(
    bus: &dyn Bus,
    group: &str,
    state: &Arc<DutyState>,
    holder: &Weak<dyn DutyHolder>,
) -> Result<Box<dyn GroupMember>, eddy_log::Error> {
    let config = TopicConfig {
        partitions: 1,
        ..TopicConfig::default()
    };
    bus.ensure_topic(DUTY_TOPIC, &config)?;
    let (state, holder, group_name) = (state.clone(), holder.clone(), group.to_string());
    bus.join(
        group,
        DUTY_TOPIC,
        Box::new(move |change| match &change {
            Membership::Assigned(p) if p.contains(&0) => {
                state.assigned.store(true, Ordering::Release);
            }
            Membership::Revoked(p) if p.contains(&0) => state.give_up(&holder, &group_name),
            _ => {}
        }),
    )
}
