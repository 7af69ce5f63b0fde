//! The nodes this node knows of: each announces itself on the engine's control channel every
//! [`NODE_INFO_INTERVAL`]; one not heard from for [`NODE_EXPIRY`] is gone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::engine::{NODE_INFO_INTERVAL, NodeInfo};

/// Silence after which a node counts as gone: three missed announcements, so one delayed or
/// lost message does not drop a live node.
pub const NODE_EXPIRY: Duration = Duration::from_secs(NODE_INFO_INTERVAL.as_secs() * 3 + 1);

#[derive(Default)]
pub struct Nodes {
    heard: Mutex<HashMap<String, (NodeInfo, Instant)>>,
}

impl Nodes {
    /// Records an announcement; true when it is from a node not known until now.
    pub fn heard(&self, info: NodeInfo) -> bool {
        self.heard_at(info, Instant::now())
    }

    fn heard_at(&self, info: NodeInfo, at: Instant) -> bool {
        let mut heard = self.heard.lock();
        heard.retain(|_, (_, last)| at.saturating_duration_since(*last) < NODE_EXPIRY);
        heard.insert(info.uid.clone(), (info, at)).is_none()
    }

    /// Whether node `uid` announced itself lately.
    pub fn is_alive(&self, uid: &str) -> bool {
        self.is_alive_at(uid, Instant::now())
    }

    fn is_alive_at(&self, uid: &str, now: Instant) -> bool {
        self.heard
            .lock()
            .get(uid)
            .is_some_and(|(_, last)| now.saturating_duration_since(*last) < NODE_EXPIRY)
    }

    /// The nodes heard from lately, by name then id.
    pub fn alive(&self) -> Vec<NodeInfo> {
        let now = Instant::now();
        let mut nodes: Vec<NodeInfo> = self
            .heard
            .lock()
            .values()
            .filter(|(_, last)| now.saturating_duration_since(*last) < NODE_EXPIRY)
            .map(|(info, _)| info.clone())
            .collect();
        nodes.sort_by(|a, b| (&a.name, &a.uid).cmp(&(&b.name, &b.uid)));
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(uid: &str) -> NodeInfo {
        NodeInfo {
            uid: uid.into(),
            name: format!("node-{uid}"),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_is_alive_until_it_falls_silent() {
        let nodes = Nodes::default();
        let start = Instant::now();
        assert!(nodes.heard_at(info("a"), start), "new");
        assert!(!nodes.heard_at(info("a"), start), "known");
        assert!(nodes.is_alive_at("a", start + NODE_INFO_INTERVAL * 2));
        assert!(!nodes.is_alive_at("a", start + NODE_EXPIRY));
        assert!(
            !nodes.is_alive_at("never", start),
            "an unknown id is not a node"
        );
    }

    #[test]
    fn silent_nodes_are_forgotten_and_the_rest_listed() {
        let nodes = Nodes::default();
        let start = Instant::now();
        nodes.heard_at(info("old"), start);
        nodes.heard_at(info("b"), start + NODE_EXPIRY);
        nodes.heard_at(info("a"), start + NODE_EXPIRY);
        assert_eq!(nodes.heard.lock().len(), 2, "the silent one was pruned");
    }
}
