//! The session's timing rules as plain data: when to ping, how long a pong may take, when the
//! connection expires, when presence and quiet positions are checked. Nothing here reads a
//! clock: every step is told the time ([`Now`]), so the rules run the same on a real clock and
//! on a simulated one.

use std::time::{Duration, Instant};

use gyre_proto::codes::{self, Disconnect};

/// The time of one input to the session, on both clocks it uses: `instant` for its own timers,
/// `unix` (seconds) for token expiry, which tokens and backends state in unix time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub instant: Instant,
    pub unix: i64,
}

impl Now {
    /// The machine's clocks, read together.
    pub fn system() -> Self {
        Self {
            instant: Instant::now(),
            unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        }
    }

    /// `elapsed` later on both clocks (whole seconds of it on the unix one).
    pub fn after(self, elapsed: Duration) -> Self {
        Self {
            instant: self.instant + elapsed,
            unix: self.unix + elapsed.as_secs() as i64,
        }
    }

    /// The instant at which the unix clock shows `unix`; now if that has passed.
    fn instant_of(self, unix: i64) -> Instant {
        self.instant + Duration::from_secs((unix - self.unix).max(0) as u64)
    }
}

/// A positioned subscription that received nothing for this long is compared with its stream
/// (Centrifugo's `channel_position_check_delay` default): PUB/SUB is at-most-once, and a lost
/// last publication leaves no gap for the offset checks to see.
pub(super) const POSITION_CHECK_DELAY: Duration = Duration::from_secs(40);

/// What the configuration, the transport and the hooks make of the timers; derived when needed
/// rather than kept in every session.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    pub ping_interval: Duration,
    /// How long a pong may take; `None` when the client sends none (`client.pong_timeout = 0`,
    /// or a unidirectional transport).
    pub pong_timeout: Option<Duration>,
    pub presence_update_interval: Duration,
    /// How long an expired connection may stay before it is closed (the client refreshes).
    pub expired_close_delay: Duration,
    /// The refresh proxy prolongs connections at their expiry instead of the client.
    pub refresh_by_proxy: bool,
}

/// Something the timers say is due; the session does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Due {
    /// End the connection (no pong in time, expired).
    Close(Disconnect),
    /// Send a ping (an empty message).
    Ping,
    /// Ask the refresh proxy: the connection reached its expiry.
    RefreshByProxy,
    /// Compare quiet positioned subscriptions with their streams.
    CheckQuietPositions,
    /// Refresh presence entries and end subscriptions past their expiry.
    RefreshPresence,
}

/// A connected session's timers.
#[derive(Debug)]
pub(super) struct Timers {
    next_ping: Instant,
    /// Set while a ping waits for its pong: the deadline for it.
    pong_deadline: Option<Instant>,
    next_presence_update: Instant,
    next_position_check: Instant,
    /// Unix seconds after which the connection must be refreshed; `None` = never expires.
    pub expires_at: Option<i64>,
}

impl Timers {
    /// Timers of a connection made at `now`. `first_ping`: how long until the first ping (a
    /// random point of the interval's second half, so that clients connected together do not
    /// ping together).
    pub fn start(now: Now, rules: &Rules, first_ping: Duration, expires_at: Option<i64>) -> Self {
        Self {
            next_ping: now.instant + first_ping,
            pong_deadline: None,
            next_presence_update: now.instant + rules.presence_update_interval,
            next_position_check: now.instant + POSITION_CHECK_DELAY,
            expires_at,
        }
    }

    /// The earliest instant at which [`Self::due`] has something to do.
    pub fn deadline(&self, now: Now, rules: &Rules) -> Instant {
        let next = self
            .pong_deadline
            .unwrap_or(self.next_ping)
            .min(self.next_presence_update)
            .min(self.next_position_check);
        match self.expires_at {
            Some(at) if rules.refresh_by_proxy => next.min(now.instant_of(at)),
            Some(at) => next.min(now.instant_of(at.saturating_add(grace(rules)))),
            None => next,
        }
    }

    /// What is due at `now`, in the order to do it; a [`Due::Close`] comes alone. The timers
    /// that fire are set for their next time.
    pub fn due(&mut self, now: Now, rules: &Rules) -> Vec<Due> {
        if self
            .pong_deadline
            .is_some_and(|deadline| now.instant >= deadline)
        {
            return vec![Due::Close(codes::NO_PONG)];
        }
        let mut due = Vec::new();
        if let Some(at) = self.expires_at {
            if rules.refresh_by_proxy {
                if now.unix >= at {
                    due.push(Due::RefreshByProxy);
                }
            } else if now.unix >= at.saturating_add(grace(rules)) {
                return vec![Due::Close(codes::CONNECTION_EXPIRED)];
            }
        }
        if self.pong_deadline.is_none() && now.instant >= self.next_ping {
            due.insert(0, Due::Ping);
            self.pong_deadline = rules.pong_timeout.map(|timeout| now.instant + timeout);
            self.next_ping = now.instant + rules.ping_interval;
        }
        if now.instant >= self.next_position_check {
            self.next_position_check = now.instant + POSITION_CHECK_DELAY;
            due.push(Due::CheckQuietPositions);
        }
        if now.instant >= self.next_presence_update {
            self.next_presence_update = now.instant + rules.presence_update_interval;
            due.push(Due::RefreshPresence);
        }
        due
    }

    /// A pong arrived: `Ok` when one was awaited (or pongs are off), else the client broke the
    /// protocol.
    pub fn pong(&mut self, rules: &Rules) -> Result<(), Disconnect> {
        if self.pong_deadline.take().is_none() && rules.pong_timeout.is_some() {
            return Err(codes::DISCONNECT_BAD_REQUEST);
        }
        Ok(())
    }
}

fn grace(rules: &Rules) -> i64 {
    rules.expired_close_delay.as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn rules() -> Rules {
        Rules {
            ping_interval: 25 * SECOND,
            pong_timeout: Some(8 * SECOND),
            presence_update_interval: 27 * SECOND,
            expired_close_delay: 25 * SECOND,
            refresh_by_proxy: false,
        }
    }

    fn start() -> Now {
        Now {
            instant: Instant::now(),
            unix: 1_700_000_000,
        }
    }

    #[test]
    fn the_first_ping_comes_when_told_then_every_interval_after_its_pong() {
        let (t0, rules) = (start(), rules());
        let mut timers = Timers::start(t0, &rules, 20 * SECOND, None);
        assert_eq!(timers.deadline(t0, &rules), t0.instant + 20 * SECOND);
        assert!(timers.due(t0.after(19 * SECOND), &rules).is_empty());
        assert_eq!(timers.due(t0.after(20 * SECOND), &rules), [Due::Ping]);
        assert_eq!(
            timers.due(t0.after(27 * SECOND), &rules),
            [Due::RefreshPresence]
        );
        // Waiting for the pong: the next deadline is the pong's, not the next ping.
        assert_eq!(timers.deadline(t0, &rules), t0.instant + 28 * SECOND);
        assert_eq!(timers.pong(&rules), Ok(()));
        assert_eq!(timers.deadline(t0, &rules), t0.instant + 40 * SECOND);
        assert_eq!(
            timers.due(t0.after(40 * SECOND), &rules),
            [Due::CheckQuietPositions]
        );
        assert_eq!(timers.due(t0.after(45 * SECOND), &rules), [Due::Ping]);
    }

    #[test]
    fn a_pong_that_does_not_come_in_time_closes_with_3012() {
        let (t0, rules) = (start(), rules());
        let mut timers = Timers::start(t0, &rules, 10 * SECOND, None);
        assert_eq!(timers.due(t0.after(10 * SECOND), &rules), [Due::Ping]);
        assert!(timers.due(t0.after(17 * SECOND), &rules).is_empty());
        assert_eq!(
            timers.due(t0.after(18 * SECOND), &rules),
            [Due::Close(codes::NO_PONG)]
        );
    }

    #[test]
    fn an_unasked_pong_is_a_protocol_error_unless_pongs_are_off() {
        let (t0, mut rules) = (start(), rules());
        let mut timers = Timers::start(t0, &rules, 10 * SECOND, None);
        assert_eq!(timers.pong(&rules), Err(codes::DISCONNECT_BAD_REQUEST));
        rules.pong_timeout = None;
        assert_eq!(timers.pong(&rules), Ok(()));
    }

    #[test]
    fn without_pongs_pings_go_on_and_nothing_waits_for_an_answer() {
        let (t0, mut rules) = (start(), rules());
        rules.pong_timeout = None;
        let mut timers = Timers::start(t0, &rules, 10 * SECOND, None);
        assert_eq!(timers.due(t0.after(10 * SECOND), &rules), [Due::Ping]);
        assert_eq!(timers.deadline(t0, &rules), t0.instant + 27 * SECOND);
        assert_eq!(
            timers.due(t0.after(35 * SECOND), &rules),
            [Due::Ping, Due::RefreshPresence]
        );
    }

    #[test]
    fn an_expired_connection_closes_after_the_grace_period() {
        let (t0, rules) = (start(), rules());
        let mut timers = Timers::start(t0, &rules, 100 * SECOND, Some(t0.unix + 5));
        assert_eq!(timers.deadline(t0, &rules), t0.instant + 27 * SECOND);
        assert_eq!(
            timers.due(t0.after(29 * SECOND), &rules),
            [Due::RefreshPresence]
        );
        assert_eq!(
            timers.due(t0.after(30 * SECOND), &rules),
            [Due::Close(codes::CONNECTION_EXPIRED)]
        );
    }

    #[test]
    fn a_refresh_moves_the_expiry() {
        let (t0, rules) = (start(), rules());
        let mut timers = Timers::start(t0, &rules, 100 * SECOND, Some(t0.unix + 1));
        timers.expires_at = Some(t0.unix + 600);
        assert!(
            !timers
                .due(t0.after(300 * SECOND), &rules)
                .contains(&Due::Close(codes::CONNECTION_EXPIRED))
        );
    }

    #[test]
    fn with_the_refresh_proxy_the_expiry_itself_asks_the_proxy_each_time_it_is_due() {
        let (t0, mut rules) = (start(), rules());
        rules.refresh_by_proxy = true;
        let mut timers = Timers::start(t0, &rules, 100 * SECOND, Some(t0.unix + 5));
        assert_eq!(timers.deadline(t0, &rules), t0.instant + 5 * SECOND);
        assert!(timers.due(t0.after(4 * SECOND), &rules).is_empty());
        assert_eq!(
            timers.due(t0.after(5 * SECOND), &rules),
            [Due::RefreshByProxy]
        );
        // Until the proxy's answer moves the expiry, the deadline stays due (not in the past).
        assert_eq!(
            timers.deadline(t0.after(6 * SECOND), &rules),
            t0.instant + 6 * SECOND
        );
    }

    #[test]
    fn a_late_tick_does_everything_that_became_due_in_order() {
        let (t0, rules) = (start(), rules());
        let mut timers = Timers::start(t0, &rules, 20 * SECOND, None);
        assert_eq!(
            timers.due(t0.after(60 * SECOND), &rules),
            [Due::Ping, Due::CheckQuietPositions, Due::RefreshPresence]
        );
    }
}
