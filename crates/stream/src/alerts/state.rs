//! The state of one group's alert, moved by evaluations with the time passed in (so tests
//! drive it without sleeping), in Prometheus's terms:
//!
//! ```text
//!            holds                 holds for `for`
//! inactive ─────────► pending ───────────────────► firing ──┐ holds: last_true = now
//!    ▲                   │ stops holding              │  ◄───┘
//!    └───────────────────┘                            │ has not held for `keep_firing_for`
//!    ▲                                                ▼
//!    └─────────────────────────────────────────── (resolved)
//! ```
//!
//! With `for = 0` a group fires at the first evaluation that holds. `keep_firing_for` damps
//! flapping: a dip shorter than it neither resolves nor fires again.

use serde::{Deserialize, Serialize};

/// Where a group's alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Phase {
    /// The condition does not hold.
    #[default]
    Inactive,
    /// The condition holds since `since` (ns), not yet for `for`.
    Pending {
        /// When it started holding.
        since: i64,
    },
    /// Fired at `since`; the condition last held at `last_true`.
    Firing {
        /// When it fired.
        since: i64,
        /// The last evaluation at which the condition held.
        last_true: i64,
    },
}

impl Phase {
    /// Whether it is another phase than `other`, or since another time: a change worth
    /// keeping. When a firing alert's condition last held changes at every evaluation and is
    /// not kept (a memory read back counts `keep_firing_for` again from then), so it is not one.
    pub fn moved_from(&self, other: &Phase) -> bool {
        match (self, other) {
            (Phase::Firing { since: a, .. }, Phase::Firing { since: b, .. }) => a != b,
            _ => self != other,
        }
    }
}

/// A change worth telling someone about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The alert fired.
    Fired,
    /// The alert, firing since `since`, resolved.
    Resolved {
        /// When it had fired.
        since: i64,
    },
}

/// A group's alert and its memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Where it is.
    #[serde(flatten)]
    pub phase: Phase,
    /// How often it has fired, ever (kept across restarts).
    pub fired: u64,
    /// Its value at the last evaluation (`None`: no row in the window).
    pub value: Option<f64>,
}

/// The rule's periods, ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long the condition must hold before firing.
    pub pending_for: i64,
    /// How long a firing alert outlives its condition.
    pub keep_firing_for: i64,
}

impl GroupState {
    /// Evaluates the group at `now`: the condition `holds` or not. Returns the transition to
    /// notify, if any.
    pub fn observe(&mut self, holds: bool, now: i64, timing: Timing) -> Option<Transition> {
        let fire = |s: &mut GroupState| {
            s.phase = Phase::Firing {
                since: now,
                last_true: now,
            };
            s.fired += 1;
            Some(Transition::Fired)
        };
        match (self.phase, holds) {
            (Phase::Inactive, true) if timing.pending_for <= 0 => fire(self),
            (Phase::Inactive, true) => {
                self.phase = Phase::Pending { since: now };
                None
            }
            (Phase::Pending { since }, true) if now.saturating_sub(since) >= timing.pending_for => {
                fire(self)
            }
            (Phase::Pending { .. }, true) | (Phase::Inactive, false) => None,
            (Phase::Pending { .. }, false) => {
                self.phase = Phase::Inactive;
                None
            }
            (Phase::Firing { since, .. }, true) => {
                self.phase = Phase::Firing {
                    since,
                    last_true: now,
                };
                None
            }
            (Phase::Firing { since, last_true }, false)
                if now.saturating_sub(last_true) >= timing.keep_firing_for =>
            {
                self.phase = Phase::Inactive;
                Some(Transition::Resolved { since })
            }
            (Phase::Firing { .. }, false) => None,
        }
    }

    /// When it fired, if it is firing.
    pub fn since(&self) -> Option<i64> {
        match self.phase {
            Phase::Firing { since, .. } => Some(since),
            _ => None,
        }
    }

    /// Whether it is firing.
    pub fn firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn timing(pending_for: i64, keep_firing_for: i64) -> Timing {
        Timing {
            pending_for: pending_for * S,
            keep_firing_for: keep_firing_for * S,
        }
    }

    /// Evaluates once a second over `holds` (one per second from 0); the transitions with
    /// their second.
    fn run(holds: &[bool], t: Timing) -> (GroupState, Vec<(i64, Transition)>) {
        let mut g = GroupState::default();
        let mut out = Vec::new();
        for (s, &h) in holds.iter().enumerate() {
            if let Some(tr) = g.observe(h, s as i64 * S, t) {
                out.push((s as i64, tr));
            }
        }
        (g, out)
    }

    #[test]
    fn a_condition_held_for_its_pending_period_fires_once_then_resolves() {
        let (g, out) = run(
            &[false, true, true, true, true, true, false, false],
            timing(2, 0),
        );
        assert_eq!(
            out,
            vec![
                (3, Transition::Fired),
                (6, Transition::Resolved { since: 3 * S })
            ]
        );
        assert_eq!(g.fired, 1);
        assert_eq!(g.phase, Phase::Inactive);
    }

    #[test]
    fn a_spike_shorter_than_for_never_fires() {
        let (g, out) = run(&[true, true, false, true, false], timing(3, 0));
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(g.fired, 0);
    }

    #[test]
    fn without_for_the_first_evaluation_that_holds_fires() {
        let (_, out) = run(&[false, true], timing(0, 0));
        assert_eq!(out, vec![(1, Transition::Fired)]);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert_across_a_short_dip_without_a_second_notice() {
        // Flapping: holds, dips for 2 s, holds again, then stops for good (last held at 3 s,
        // so it resolves 3 s later).
        let holds = [true, false, false, true, false, false, false, false];
        let (damped, out) = run(&holds, timing(0, 3));
        assert_eq!(
            out,
            vec![
                (0, Transition::Fired),
                (6, Transition::Resolved { since: 0 })
            ]
        );
        assert_eq!(damped.fired, 1);
        // Undamped, the same series notifies four times.
        let (undamped, out) = run(&holds, timing(0, 0));
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(undamped.fired, 2);
    }

    #[test]
    fn a_firing_alert_that_still_holds_has_not_moved_but_one_that_fired_again_has() {
        let t = timing(0, 0);
        let mut g = GroupState::default();
        g.observe(true, 0, t);
        let fired = g.phase;
        g.observe(true, S, t);
        assert!(!g.phase.moved_from(&fired), "{:?}", g.phase);
        g.observe(false, 2 * S, t);
        assert!(g.phase.moved_from(&fired));
        g.observe(true, 3 * S, t);
        assert!(g.phase.moved_from(&fired), "fired again at another time");
    }

    #[test]
    fn a_firing_state_read_back_is_still_firing_and_does_not_fire_again() {
        let (g, _) = run(&[true], timing(0, 0));
        let text = serde_json::to_string(&g).unwrap();
        let mut back: GroupState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.observe(true, 5 * S, timing(0, 0)), None);
        assert!(back.firing());
        assert_eq!(back.fired, 1);
    }
}
