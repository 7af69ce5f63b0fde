//! Questions a node asks the whole cluster over the engine's control channel, and the answers
//! it waits for: the server API's `channels` counts the subscribers of every node, not only its
//! own.
//!
//! The asking node publishes a query with a fresh id; every node (the asker included, through
//! the same channel) answers with its own figures, addressed to the asker; the asker waits until
//! every node it knows to be alive ([`super::nodes::Nodes`]) answered, or [`SURVEY_TIMEOUT`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::engine::{ControlCommand, EngineError, Survey};
use crate::protocol::channel_pattern::ChannelPattern;
use crate::protocol::node::Node;

/// How long a survey waits for nodes that have not answered; it then answers with the nodes
/// that did (and logs the others).
pub const SURVEY_TIMEOUT: Duration = Duration::from_secs(2);

/// One node's answer: its id and its channels with their subscriber counts.
type Answer = (String, Vec<(String, u64)>);

/// The surveys of this node that wait for answers, by id.
#[derive(Default)]
pub struct Surveys {
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<Answer>>>,
}

impl Surveys {
    /// Hands an answer to the survey waiting for it; answers to surveys that ended are dropped.
    fn deliver(&self, id: &str, node: String, channels: Vec<(String, u64)>) {
        if let Some(waiting) = self.waiting.lock().get(id) {
            let _ = waiting.send((node, channels));
        }
    }
}

/// Removes a survey from the waiting ones however its wait ends.
struct Registration<'a> {
    surveys: &'a Surveys,
    id: String,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.surveys.waiting.lock().remove(&self.id);
    }
}

/// This node's channels matching `pattern` (all when `None`), with their subscriber counts.
fn local_channels(node: &Node, pattern: Option<&ChannelPattern>) -> Vec<(String, u64)> {
    node.hub
        .channels()
        .into_iter()
        .filter(|(channel, _)| pattern.is_none_or(|p| p.matches(channel)))
        .map(|(channel, n)| (channel, n as u64))
        .collect()
}

/// Every node's channels matching `pattern` (empty = all; the caller checked that it parses),
/// subscriber counts summed across nodes. `Err` only when the query cannot be published; nodes
/// that do not answer in time are left out.
pub async fn cluster_channels(
    node: &Node,
    pattern: &str,
) -> Result<BTreeMap<String, u64>, EngineError> {
    // The caller refused a pattern that does not parse (error 107).
    let parsed = match pattern {
        "" => None,
        text => ChannelPattern::parse(text).ok(),
    };
    let mut expected: HashSet<String> = node.nodes.alive().into_iter().map(|n| n.uid).collect();
    expected.insert(node.id.clone());
    let id = uuid::Uuid::new_v4().to_string();
    let (answers, mut answered) = mpsc::unbounded_channel();
    node.surveys.waiting.lock().insert(id.clone(), answers);
    let _registration = Registration {
        surveys: &node.surveys,
        id: id.clone(),
    };
    let mut totals = BTreeMap::new();
    let mut add = |channels: Vec<(String, u64)>| {
        for (channel, n) in channels {
            *totals.entry(channel).or_insert(0) += n;
        }
    };
    if expected.len() == 1 {
        // Alone (or on the memory engine): no need for the round trip.
        add(local_channels(node, parsed.as_ref()));
        return Ok(totals);
    }
    let query = ControlCommand::Survey(Survey::ChannelsQuery {
        id,
        from: node.id.clone(),
        pattern: pattern.to_owned(),
    });
    node.engine.publish_control(&query).await?;
    let deadline = tokio::time::Instant::now() + SURVEY_TIMEOUT;
    while !expected.is_empty() {
        match tokio::time::timeout_at(deadline, answered.recv()).await {
            Ok(Some((from, channels))) => {
                if expected.remove(&from) {
                    add(channels);
                }
            }
            Ok(None) | Err(_) => {
                tracing::warn!(
                    missing = ?expected,
                    "channels: nodes did not answer within {SURVEY_TIMEOUT:?}; counted without them"
                );
                break;
            }
        }
    }
    Ok(totals)
}

/// A survey message arrived on the control channel: answer a query, or hand an answer to the
/// survey of this node that waits for it.
pub fn handle(node: &Arc<Node>, survey: Survey) {
    match survey {
        Survey::ChannelsQuery { id, from, pattern } => {
            // In a task of its own: listing and matching every channel must not hold up the
            // dispatcher, which delivers publications.
            let node = Arc::clone(node);
            tokio::spawn(async move {
                // A pattern that does not parse was refused by the asker before it asked.
                let parsed = match pattern.as_str() {
                    "" => None,
                    text => ChannelPattern::parse(text).ok(),
                };
                let answer = ControlCommand::Survey(Survey::ChannelsAnswer {
                    id,
                    to: from,
                    node: node.id.clone(),
                    channels: local_channels(&node, parsed.as_ref()),
                });
                if let Err(error) = node.engine.publish_control(&answer).await {
                    tracing::debug!(%error, "channels survey answer not published");
                }
            });
        }
        Survey::ChannelsAnswer {
            id,
            to,
            node: from,
            channels,
        } => {
            if to == node.id {
                node.surveys.deliver(&id, from, channels);
            }
        }
    }
}
