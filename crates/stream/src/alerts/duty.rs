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
//! On the embedded bus the process is the whole cluster: it always holds every duty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use eddy_base::sync::lock;
use eddy_log::{Bus, GroupMember, Membership, TopicConfig};

/// The one-partition topic whose ownership, per rule's group, is the duty.
pub const DUTY_TOPIC: &str = "eddy.alert-duty";

/// How often a member is polled (its heartbeat).
const POLL: Duration = Duration::from_millis(200);
/// How long a failed join waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The consumer group of rule `rule`'s duty.
pub fn duty_group(rule: &str) -> String {
    format!("alert.{rule}")
}

/// Where the duties of a node's rules are decided: on its bus, if shared.
#[derive(Debug)]
pub struct AlertDuty {
    bus: Option<Arc<dyn Bus>>,
}

impl AlertDuty {
    /// The duties of a node on `bus`: always held on a bus only this process reads; elected
    /// through the bus's consumer groups on a shared one.
    pub fn for_bus(bus: &Arc<dyn Bus>) -> Arc<AlertDuty> {
        Arc::new(AlertDuty {
            bus: bus.shared().then(|| bus.clone()),
        })
    }

    /// Takes part in the election of rule `rule`'s duty until the returned handle is dropped
    /// or left.
    pub fn take_part(&self, rule: &str) -> Duty {
        let duty = Duty {
            held: Arc::new(AtomicBool::new(self.bus.is_none())),
            stop: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
        };
        if let Some(bus) = &self.bus {
            let (bus, held, stop) = (bus.clone(), duty.held.clone(), duty.stop.clone());
            let group = duty_group(rule);
            match std::thread::Builder::new()
                .name(format!("duty-{rule}"))
                .spawn(move || elect(&*bus, &group, &held, &stop))
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

/// This node's part in one rule's duty.
#[derive(Debug)]
pub struct Duty {
    held: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Duty {
    /// Whether this node evaluates the rule now.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Leaves the election (on a shared bus the duty moves to another node at once).
    pub fn leave(&self) {
        self.stop.store(true, Ordering::Relaxed);
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

/// Joins `group` and keeps `held` as the bus says, until `stop`.
fn elect(bus: &dyn Bus, group: &str, held: &Arc<AtomicBool>, stop: &AtomicBool) {
    let mut member: Option<Box<dyn GroupMember>> = None;
    while !stop.load(Ordering::Relaxed) {
        let m = match member.as_mut() {
            Some(m) => m,
            None => match join(bus, group, held) {
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
            held.store(false, Ordering::Release);
            member = None;
            std::thread::sleep(RETRY);
        }
    }
    held.store(false, Ordering::Release);
}

fn join(
    bus: &dyn Bus,
    group: &str,
    held: &Arc<AtomicBool>,
) -> Result<Box<dyn GroupMember>, eddy_log::Error> {
    let config = TopicConfig {
        partitions: 1,
        ..TopicConfig::default()
    };
    bus.ensure_topic(DUTY_TOPIC, &config)?;
    let (held, group_name) = (held.clone(), group.to_string());
    bus.join(
        group,
        DUTY_TOPIC,
        Box::new(move |change| {
            let now = match &change {
                Membership::Assigned(p) if p.contains(&0) => true,
                Membership::Revoked(p) if p.contains(&0) => false,
                _ => return,
            };
            if now != held.swap(now, Ordering::AcqRel) {
                tracing::info!(
                    group = %group_name,
                    "{}",
                    if now {
                        "this node took the alert rule's duty: it evaluates the rule"
                    } else {
                        "this node gave up the alert rule's duty"
                    },
                );
            }
        }),
    )
}
