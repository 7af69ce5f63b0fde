//! Recovery decisions (docs/protocol.md#recovery-on-subscribe): given where a client was and what
//! the stream holds, is the client's view continuous, and what must it receive?

use gyre_proto::Publication;

use crate::engine::{HistoryResult, StreamPosition};

/// The outcome for one positioned subscribe.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// The stream's position: the client's position once it has processed `publications`.
    pub top: StreamPosition,
    /// The publications the client missed, in offset order (empty unless `recovered`).
    pub publications: Vec<Publication>,
    /// Continuity is guaranteed: the client missed nothing beyond `publications`.
    pub recovered: bool,
    /// The client asked to recover.
    pub was_recovering: bool,
    /// The offset the subscribe reply announces: the client's own when recovered (it advances
    /// through `publications`, as with Centrifuge), else the stream's.
    pub reply_offset: u64,
}

/// A subscribe that only wants to know where the stream stands.
pub fn position_only(top: StreamPosition) -> Recovery {
    Recovery {
        reply_offset: top.offset,
        top,
        publications: Vec::new(),
        recovered: false,
        was_recovering: false,
    }
}

/// A recovering subscribe: `history` holds the publications after `since.offset` (at most
/// `limit + 1` of them, so that "more than the limit" is visible; `limit` 0 = unlimited).
pub fn recover(since: &StreamPosition, history: HistoryResult, limit: usize) -> Recovery {
    let HistoryResult {
        position: top,
        publications,
    } = history;
    let same_epoch = since.epoch.is_empty() || since.epoch == top.epoch;
    let continuous = match (publications.first(), publications.last()) {
        (None, _) | (_, None) => top.offset == since.offset,
        (Some(first), Some(last)) => {
            first.offset == since.offset + 1
                && last.offset == top.offset
                && (limit == 0 || publications.len() <= limit)
        }
    };
    let recovered = same_epoch && continuous;
    Recovery {
        reply_offset: if recovered { since.offset } else { top.offset },
        top,
        publications: if recovered { publications } else { Vec::new() },
        recovered,
        was_recovering: true,
    }
}

/// A recovering subscribe in cache mode (`force_recovery_mode = "cache"`, the connect proxy's
/// `cache_recover`): `history` holds at most the latest publication. The client gets it unless it
/// already holds it, and counts as recovered when it is the stream's top, or when the stream is
/// empty of publications and the client stands at its top already. Missed publications before
/// the latest are skipped on purpose: the latest one carries the whole state.
pub fn recover_cache(since: &StreamPosition, history: HistoryResult) -> Recovery {
    let HistoryResult {
        position: top,
        publications,
    } = history;
    let holds_top = since.offset > 0 && since.offset == top.offset && since.epoch == top.epoch;
    let (recovered, publications) = match publications.into_iter().next() {
        Some(latest) if latest.offset == top.offset => {
            let missed = if holds_top { Vec::new() } else { vec![latest] };
            (true, missed)
        }
        Some(_) => (false, Vec::new()),
        None => (holds_top, Vec::new()),
    };
    Recovery {
        reply_offset: top.offset,
        top,
        publications,
        recovered,
        was_recovering: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: epoch.into(),
        }
    }

    fn history(top: u64, offsets: &[u64]) -> HistoryResult {
        HistoryResult {
            position: position(top, "e"),
            publications: offsets
                .iter()
                .map(|&offset| Publication {
                    offset,
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn missed_publications_are_recovered() {
        let r = recover(&position(5, "e"), history(8, &[6, 7, 8]), 300);
        assert!(r.recovered && r.was_recovering);
        assert_eq!(r.publications.len(), 3);
        assert_eq!((r.top.offset, r.reply_offset), (8, 5));
    }

    #[test]
    fn nothing_missed_is_recovered() {
        assert!(recover(&position(8, "e"), history(8, &[]), 300).recovered);
    }

    #[test]
    fn trimmed_history_is_not_recovered() {
        let r = recover(&position(2, "e"), history(8, &[6, 7, 8]), 300);
        assert!(!r.recovered && r.publications.is_empty());
    }

    #[test]
    fn another_epoch_is_not_recovered() {
        assert!(!recover(&position(8, "old"), history(8, &[]), 300).recovered);
    }

    #[test]
    fn more_than_the_limit_is_not_recovered() {
        assert!(!recover(&position(5, "e"), history(8, &[6, 7, 8]), 2).recovered);
    }

    #[test]
    fn cache_mode_gives_only_the_latest_publication() {
        let r = recover_cache(&position(2, "e"), history(9, &[9]));
        assert!(r.recovered && r.was_recovering);
        let offsets: Vec<u64> = r.publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [9]);
        assert_eq!((r.top.offset, r.reply_offset), (9, 9));
        // A first subscribe (no position) and another epoch get it too.
        assert_eq!(
            recover_cache(&position(0, ""), history(9, &[9]))
                .publications
                .len(),
            1
        );
        assert!(recover_cache(&position(3, "old"), history(9, &[9])).recovered);
    }

    #[test]
    fn cache_mode_sends_nothing_the_client_holds() {
        let r = recover_cache(&position(9, "e"), history(9, &[9]));
        assert!(r.recovered && r.publications.is_empty());
    }

    #[test]
    fn cache_mode_without_a_publication_is_recovered_only_at_the_top() {
        assert!(!recover_cache(&position(0, ""), history(0, &[])).recovered);
        assert!(!recover_cache(&position(3, "e"), history(9, &[])).recovered);
        assert!(recover_cache(&position(9, "e"), history(9, &[])).recovered);
    }

    #[test]
    fn an_empty_epoch_from_the_client_matches_any() {
        assert!(recover(&position(0, ""), history(2, &[1, 2]), 0).recovered);
    }
}
