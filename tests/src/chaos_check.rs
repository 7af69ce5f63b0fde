//! What every chaos fault must leave true, checked from what the publishers and every subscriber
//! recorded ([`ChaosRecord::violations`]):
//!
//! - **no reused position**: no (channel, epoch, offset) names two different publications, across
//!   every acknowledgement and every delivery;
//! - **no moved publication**: a publication is delivered at the position its publisher was told,
//!   and one that was never acknowledged is delivered at one position only;
//! - **no duplicate**: a subscriber gets each publication once;
//! - **offsets rise**: within one epoch, each delivery to a subscriber has a higher offset than the
//!   one before;
//! - **no silent gap**: every acknowledged publication reached every subscriber of its channel,
//!   unless a subscription reset announced its loss (see [`Seen::Subscribed`]);
//! - nothing arrives that nobody published, and nothing arrives before a subscription.
//!
//! A delivery carries no epoch (the SDKs hand out the offset only): it belongs to the epoch of the
//! subscription it arrived in, the one the last `subscribed` event named. A server that went on
//! delivering a new epoch's publications to a subscription of the old one shows up as a moved
//! publication.

use std::collections::HashMap;
use std::fmt;

/// How far two clocks of the machine may disagree when an announcement is compared with the time
/// a publication was sent (whole milliseconds; the driver and the script both read the system
/// clock).
pub const CLOCK_SLACK_MS: i64 = 2;

/// A stream position.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub epoch: String,
    pub offset: u64,
}

impl Position {
    pub fn new(epoch: &str, offset: u64) -> Self {
        Self {
            epoch: epoch.to_owned(),
            offset,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.epoch, self.offset)
    }
}

/// A publication its publisher saw acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct Acked {
    pub channel: String,
    /// The publication's identity (unique across the run).
    pub id: String,
    pub position: Position,
    /// Unix ms when its (first) attempt was sent.
    pub sent_ms: i64,
}

/// A publication whose publish failed or timed out: it may be lost, or may have been applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Unacked {
    pub channel: String,
    pub id: String,
    pub sent_ms: i64,
    pub error: String,
}

/// What one subscription saw, in the order it saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A subscribe (or resubscribe) succeeded at `position`. Anything but a successful recovery
    /// (`was_recovering && recovered`) is a **reset**: the subscriber starts over from `position`,
    /// and what was published before (not after `position`) is announced as possibly missed.
    Subscribed {
        t_ms: i64,
        was_recovering: bool,
        recovered: bool,
        position: Position,
    },
    Publication {
        t_ms: i64,
        offset: u64,
        id: String,
    },
}

/// One subscriber's subscription to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberLog {
    pub who: String,
    pub channel: String,
    pub seen: Vec<Seen>,
}

/// Everything one chaos run recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChaosRecord {
    pub acked: Vec<Acked>,
    pub unacked: Vec<Unacked>,
    pub subscribers: Vec<SubscriberLog>,
}

/// A broken promise.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    /// One position named two publications.
    ReusedPosition {
        channel: String,
        position: Position,
        ids: [String; 2],
    },
    /// One publication at two positions (acknowledged at one, delivered at another, or
    /// delivered at two).
    MovedPublication {
        channel: String,
        id: String,
        positions: [Position; 2],
    },
    SilentGap {
        who: String,
        channel: String,
        id: String,
        position: Position,
        sent_ms: i64,
    },
    Duplicate {
        who: String,
        channel: String,
        id: String,
    },
    FallingOffset {
        who: String,
        channel: String,
        epoch: String,
        previous: u64,
        offset: u64,
    },
    Unpublished {
        who: String,
        channel: String,
        id: String,
    },
    BeforeSubscribe {
        who: String,
        channel: String,
        id: String,
    },
}

/// Counts of a run that passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub acked: usize,
    pub unacked: usize,
    pub subscribers: usize,
    pub deliveries: usize,
    /// Subscriptions reset after their first subscribe (failed recoveries).
    pub failed_recoveries: usize,
    /// Successful recoveries.
    pub recoveries: usize,
    /// (subscriber, acknowledged publication) pairs missed and announced by a reset.
    pub announced_misses: usize,
    /// Unacknowledged publications that reached at least one subscriber.
    pub unacked_delivered: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acknowledged, {} failed ({} of them delivered anyway); {} subscriptions, {} \
             deliveries, {} recoveries, {} failed recoveries, {} misses announced",
            self.acked,
            self.unacked,
            self.unacked_delivered,
            self.subscribers,
            self.deliveries,
            self.recoveries,
            self.failed_recoveries,
            self.announced_misses
        )
    }
}

/// Whether the reset at `reset` (taken at `t_ms`) announces the possible loss of `ack`: the
/// publication was sent no later than the reset, and it is not after the reset's position.
fn announces(reset: &Position, t_ms: i64, ack: &Acked) -> bool {
    let after_reset = ack.position.epoch == reset.epoch && ack.position.offset > reset.offset;
    ack.sent_ms <= t_ms + CLOCK_SLACK_MS && !after_reset
}

impl ChaosRecord {
    /// Every broken promise (empty when the run is consistent) and the run's counts.
    pub fn violations(&self) -> (Summary, Vec<Violation>) {
        let mut out = Vec::new();
        let mut summary = Summary {
            acked: self.acked.len(),
            unacked: self.unacked.len(),
            subscribers: self.subscribers.len(),
            ..Summary::default()
        };

        // Positions and publications, first from the acknowledgements, then from the deliveries.
        let mut by_position: HashMap<(&str, &Position), &str> = HashMap::new();
        let mut by_id: HashMap<(&str, &str), &Position> = HashMap::new();
        // Every (channel, publication, position) claim: acknowledgements, then deliveries.
        let mut claims: Vec<(&str, &str, Position)> = self
            .acked
            .iter()
            .map(|a| (a.channel.as_str(), a.id.as_str(), a.position.clone()))
            .collect();

        let published: HashMap<(&str, &str), bool> = self
            .acked
            .iter()
            .map(|a| ((a.channel.as_str(), a.id.as_str()), true))
            .chain(
                self.unacked
                    .iter()
                    .map(|u| ((u.channel.as_str(), u.id.as_str()), false)),
            )
            .collect();
        let mut unacked_seen: HashMap<(&str, &str), ()> = HashMap::new();

        for sub in &self.subscribers {
            let (who, channel) = (sub.who.as_str(), sub.channel.as_str());
            let mut epoch: Option<&str> = None;
            let mut last: Option<(&str, u64)> = None;
            let mut got: HashMap<&str, ()> = HashMap::new();
            let mut subscribes = 0;
            for seen in &sub.seen {
                match seen {
                    Seen::Subscribed {
                        was_recovering,
                        recovered,
                        position,
                        ..
                    } => {
                        subscribes += 1;
                        if *was_recovering && *recovered {
                            summary.recoveries += 1;
                        } else if subscribes > 1 {
                            summary.failed_recoveries += 1;
                        }
                        epoch = Some(&position.epoch);
                    }
                    Seen::Publication { offset, id, .. } => {
                        summary.deliveries += 1;
                        let Some(epoch) = epoch else {
                            out.push(Violation::BeforeSubscribe {
                                who: who.to_owned(),
                                channel: channel.to_owned(),
                                id: id.clone(),
                            });
                            continue;
                        };
                        match published.get(&(channel, id.as_str())) {
                            None => out.push(Violation::Unpublished {
                                who: who.to_owned(),
                                channel: channel.to_owned(),
                                id: id.clone(),
                            }),
                            Some(false) => {
                                unacked_seen.insert((channel, id.as_str()), ());
                            }
                            Some(true) => {}
                        }
                        if got.insert(id.as_str(), ()).is_some() {
                            out.push(Violation::Duplicate {
                                who: who.to_owned(),
                                channel: channel.to_owned(),
                                id: id.clone(),
                            });
                        }
                        if let Some((last_epoch, previous)) = last
                            && last_epoch == epoch
                            && *offset <= previous
                        {
                            out.push(Violation::FallingOffset {
                                who: who.to_owned(),
                                channel: channel.to_owned(),
                                epoch: epoch.to_owned(),
                                previous,
                                offset: *offset,
                            });
                        }
                        last = Some((epoch, *offset));
                        claims.push((channel, id.as_str(), Position::new(epoch, *offset)));
                    }
                }
            }
        }
        summary.unacked_delivered = unacked_seen.len();

        for (channel, id, position) in &claims {
            if let Some(other) = by_position.get(&(*channel, position))
                && other != id
            {
                out.push(Violation::ReusedPosition {
                    channel: channel.to_string(),
                    position: position.clone(),
                    ids: [other.to_string(), id.to_string()],
                });
            }
            by_position.entry((channel, position)).or_insert(id);
            if let Some(first) = by_id.get(&(*channel, *id))
                && *first != position
            {
                out.push(Violation::MovedPublication {
                    channel: channel.to_string(),
                    id: id.to_string(),
                    positions: [(*first).clone(), position.clone()],
                });
            }
            by_id.entry((channel, id)).or_insert(position);
        }

        // Gaps: every acknowledged publication of the channel, received or announced.
        for sub in &self.subscribers {
            let received: HashMap<&str, ()> = sub
                .seen
                .iter()
                .filter_map(|s| match s {
                    Seen::Publication { id, .. } => Some((id.as_str(), ())),
                    Seen::Subscribed { .. } => None,
                })
                .collect();
            let resets: Vec<(&Position, i64)> = sub
                .seen
                .iter()
                .filter_map(|s| match s {
                    Seen::Subscribed {
                        t_ms,
                        was_recovering,
                        recovered,
                        position,
                    } if !(*was_recovering && *recovered) => Some((position, *t_ms)),
                    _ => None,
                })
                .collect();
            for ack in self.acked.iter().filter(|a| a.channel == sub.channel) {
                if received.contains_key(ack.id.as_str()) {
                    continue;
                }
                if resets.iter().any(|(p, t)| announces(p, *t, ack)) {
                    summary.announced_misses += 1;
                    continue;
                }
                out.push(Violation::SilentGap {
                    who: sub.who.clone(),
                    channel: sub.channel.clone(),
                    id: ack.id.clone(),
                    position: ack.position.clone(),
                    sent_ms: ack.sent_ms,
                });
            }
        }
        (summary, out)
    }

    /// [`ChaosRecord::violations`], panicking with the first ones (and how many there are) unless
    /// there are none.
    pub fn assert_consistent(&self) -> Summary {
        let (summary, violations) = self.violations();
        if !violations.is_empty() {
            let shown: Vec<String> = violations
                .iter()
                .take(25)
                .map(|v| format!("  {v:?}"))
                .collect();
            panic!(
                "{} violations in a run of {summary}:\n{}",
                violations.len(),
                shown.join("\n")
            );
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    //! Each promise, broken on purpose in a small record, is caught.
    use super::*;

    const E1: &str = "AAAAAAAA";
    const E2: &str = "BBBBBBBB";

    fn ack(id: &str, epoch: &str, offset: u64, sent_ms: i64) -> Acked {
        Acked {
            channel: "c".into(),
            id: id.into(),
            position: Position::new(epoch, offset),
            sent_ms,
        }
    }

    fn subscribed(t_ms: i64, was_recovering: bool, recovered: bool, epoch: &str, top: u64) -> Seen {
        Seen::Subscribed {
            t_ms,
            was_recovering,
            recovered,
            position: Position::new(epoch, top),
        }
    }

    fn publication(offset: u64, id: &str) -> Seen {
        Seen::Publication {
            t_ms: 0,
            offset,
            id: id.into(),
        }
    }

    /// Three publications at offsets 1..=3 of E1, sent at 10, 20, 30; one subscriber from offset
    /// 0 that got them all.
    fn clean() -> ChaosRecord {
        ChaosRecord {
            acked: vec![
                ack("a", E1, 1, 10),
                ack("b", E1, 2, 20),
                ack("c", E1, 3, 30),
            ],
            unacked: vec![],
            subscribers: vec![SubscriberLog {
                who: "s".into(),
                channel: "c".into(),
                seen: vec![
                    subscribed(5, false, false, E1, 0),
                    publication(1, "a"),
                    publication(2, "b"),
                    publication(3, "c"),
                ],
            }],
        }
    }

    fn only(record: &ChaosRecord) -> Violation {
        let (_, violations) = record.violations();
        assert_eq!(violations.len(), 1, "{violations:#?}");
        violations.into_iter().next().unwrap()
    }

    #[test]
    fn a_clean_run_passes() {
        let summary = clean().assert_consistent();
        assert_eq!(summary.deliveries, 3);
        assert_eq!(summary.announced_misses, 0);
    }

    #[test]
    fn a_missed_publication_is_a_gap() {
        let mut r = clean();
        r.subscribers[0].seen.remove(2);
        assert!(matches!(only(&r), Violation::SilentGap { id, .. } if id == "b"));
    }

    #[test]
    fn a_miss_announced_by_a_failed_recovery_passes() {
        let mut r = clean();
        // "b" and "c" were lost with a restart; the subscriber was told at 40, under a new epoch.
        r.subscribers[0].seen.truncate(2);
        r.subscribers[0]
            .seen
            .push(subscribed(40, true, false, E2, 2));
        r.acked.push(ack("d", E2, 3, 50));
        r.subscribers[0].seen.push(publication(3, "d"));
        let summary = r.assert_consistent();
        assert_eq!(summary.announced_misses, 2);
        assert_eq!(summary.failed_recoveries, 1);
    }

    #[test]
    fn an_announcement_covers_only_what_was_sent_before_it() {
        let mut r = clean();
        r.subscribers[0].seen.truncate(2);
        // Told at 15: "b" (sent at 20) and "c" (30) came later and must arrive.
        r.subscribers[0]
            .seen
            .push(subscribed(15, true, false, E1, 1));
        let (_, violations) = r.violations();
        assert_eq!(violations.len(), 2, "{violations:#?}");
        assert!(
            violations
                .iter()
                .all(|v| matches!(v, Violation::SilentGap { .. }))
        );
    }

    #[test]
    fn an_announcement_does_not_cover_what_follows_its_position() {
        let mut r = clean();
        r.subscribers[0].seen.truncate(2);
        // Told at 40, positioned at offset 2 of E1: "c" (offset 3) comes after and must arrive.
        r.subscribers[0]
            .seen
            .push(subscribed(40, true, false, E1, 2));
        assert!(matches!(only(&r), Violation::SilentGap { id, .. } if id == "c"));
    }

    #[test]
    fn a_successful_recovery_announces_nothing() {
        let mut r = clean();
        r.subscribers[0].seen.truncate(2);
        r.subscribers[0]
            .seen
            .push(subscribed(40, true, true, E1, 3));
        r.subscribers[0].seen.push(publication(3, "c"));
        assert!(matches!(only(&r), Violation::SilentGap { id, .. } if id == "b"));
    }

    #[test]
    fn a_duplicate_is_caught() {
        let mut r = clean();
        r.subscribers[0]
            .seen
            .insert(2, subscribed(25, true, true, E1, 1));
        r.subscribers[0].seen.insert(3, publication(1, "a"));
        let (_, violations) = r.violations();
        assert!(
            violations
                .iter()
                .any(|v| matches!(v, Violation::Duplicate { id, .. } if id == "a")),
            "{violations:#?}"
        );
    }

    #[test]
    fn a_reused_position_is_caught() {
        let mut r = clean();
        r.acked.push(ack("x", E1, 2, 40));
        let (_, violations) = r.violations();
        assert!(
            violations.iter().any(|v| matches!(
                v,
                Violation::ReusedPosition { ids, .. } if *ids == ["b".to_string(), "x".to_string()]
            )),
            "{violations:#?}"
        );
    }

    #[test]
    fn the_same_offset_under_another_epoch_is_no_reuse() {
        let mut r = clean();
        r.acked.push(ack("x", E2, 2, 40));
        r.subscribers[0]
            .seen
            .push(subscribed(45, true, false, E2, 2));
        r.assert_consistent();
    }

    #[test]
    fn a_falling_offset_is_caught() {
        let mut r = clean();
        r.subscribers[0].seen.swap(2, 3);
        assert!(matches!(
            only(&r),
            Violation::FallingOffset {
                previous: 3,
                offset: 2,
                ..
            }
        ));
    }

    #[test]
    fn a_delivery_at_another_offset_than_acknowledged_is_caught() {
        let mut r = clean();
        r.subscribers[0].seen[3] = publication(4, "c");
        assert!(matches!(
            only(&r),
            Violation::MovedPublication { id, .. } if id == "c"
        ));
    }

    #[test]
    fn a_new_epoch_delivered_as_a_continuation_is_caught() {
        let mut r = clean();
        // "c" was acknowledged under E2, but the subscription (of E1) got it as if it continued E1.
        r.acked[2].position = Position::new(E2, 3);
        assert!(matches!(
            only(&r),
            Violation::MovedPublication { id, .. } if id == "c"
        ));
    }

    #[test]
    fn an_unacknowledged_publication_may_be_lost_or_arrive_at_one_position() {
        let mut r = clean();
        r.unacked.push(Unacked {
            channel: "c".into(),
            id: "u".into(),
            sent_ms: 35,
            error: "timeout".into(),
        });
        r.assert_consistent();
        r.subscribers[0].seen.push(publication(4, "u"));
        assert_eq!(r.assert_consistent().unacked_delivered, 1);
        let mut other = r.subscribers[0].clone();
        other.who = "t".into();
        *other.seen.last_mut().unwrap() = publication(5, "u");
        r.subscribers.push(other);
        assert!(matches!(
            only(&r),
            Violation::MovedPublication { id, .. } if id == "u"
        ));
    }

    #[test]
    fn something_nobody_published_is_caught() {
        let mut r = clean();
        r.subscribers[0].seen.push(publication(4, "ghost"));
        assert!(matches!(only(&r), Violation::Unpublished { id, .. } if id == "ghost"));
    }

    #[test]
    fn a_delivery_before_any_subscribe_is_caught() {
        let mut r = clean();
        r.subscribers[0].seen.remove(0);
        let (_, violations) = r.violations();
        assert_eq!(violations.len(), 3, "{violations:#?}");
        assert!(
            violations
                .iter()
                .all(|v| matches!(v, Violation::BeforeSubscribe { .. })),
            "{violations:#?}"
        );
    }

    #[test]
    #[should_panic(expected = "violations in a run of")]
    fn assert_consistent_panics_on_a_violation() {
        let mut r = clean();
        r.subscribers[0].seen.remove(1);
        r.assert_consistent();
    }
}
