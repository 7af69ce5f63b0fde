//! Versioned publications (the publish API's `version` and `version_epoch`): a publication whose
//! version is not newer than the one its channel last accepted is skipped. The Redis module and
//! the memory engine both decide with [`is_stale`], atomically with the append.

/// Whether a publication of `version` (> 0) in `version_epoch` must be skipped, given the
/// channel's last accepted `(version, version_epoch)`. Versions only compare within one epoch: a
/// new epoch starts over. An empty `version_epoch` compares with whatever epoch is stored.
pub fn is_stale(stored: Option<(u64, &str)>, version: u64, version_epoch: &str) -> bool {
    match stored {
        Some((stored_version, stored_epoch)) => {
            (version_epoch.is_empty() || version_epoch == stored_epoch) && version <= stored_version
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_stale;

    #[test]
    fn only_a_newer_version_of_the_same_epoch_passes() {
        assert!(!is_stale(None, 1, ""));
        assert!(is_stale(Some((5, "")), 5, ""));
        assert!(is_stale(Some((5, "")), 4, ""));
        assert!(!is_stale(Some((5, "")), 6, ""));
        assert!(is_stale(Some((5, "a")), 3, "a"));
        assert!(!is_stale(Some((5, "a")), 1, "b"), "a new epoch starts over");
        assert!(
            is_stale(Some((5, "a")), 5, ""),
            "no epoch compares with any"
        );
    }
}
