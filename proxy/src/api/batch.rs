//! `batch`: `{"commands":[{"<method>":{params}},…],"parallel":bool}`, answered (HTTP 200) with
//! `{"replies":[{"<method>":{result}} or {"error":{code,message}},…]}`, one reply per command,
//! in order. Centrifugo's shapes, which the `cent` clients parse.
//!
//! What one request may cost is bounded by the request and its replies:
//! - at most `http_api.batch_max_commands` commands are collected: parsing stops with an error
//!   at the first one past the cap, and the whole request is refused with HTTP 400;
//! - a command is kept as a slice of the request body (16 bytes) until it runs; its method and
//!   params are decoded only then, one command at a time;
//! - each reply is appended to one output buffer as soon as its command ran ([`ReplyList`]).
//!
//! Batches do not nest (Centrifugo's don't): a `batch` command is "method not found", so nothing
//! recurses however deeply a request is nested.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::reply::ReplyList;
use super::{BAD_REQUEST, CallError, methods};
use crate::protocol::node::Node;

/// Runs a batch request body: the `{"replies":[…]}` JSON, or why the body is not a batch
/// request (bad JSON, no `commands` array, more commands than the cap).
pub async fn run(node: &Node, body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let max_commands = node.config.http_api.batch_max_commands as usize;
    let request = BatchRequest::parse(body, max_commands)?;
    // Replies are usually shorter than their commands; the body's length is a fair first guess.
    let mut replies = ReplyList::new("replies", body.len());
    for command in request.commands {
        // A batch has one HTTP status for all its commands: a command that cannot be decoded
        // gets Centrifugo's "bad request" reply instead of a 400, and the others still run.
        let command = match Command::parse(command) {
            Ok(command) => command,
            Err(error) => {
                tracing::debug!(%error, "api: batch command is not one method with its params");
                replies.push_error(BAD_REQUEST);
                continue;
            }
        };
        let params = command.params.get().as_bytes();
        match methods::call(node, &command.method, params).await {
            Ok(result) => replies.push_result(&command.method, &result),
            Err(CallError::Api(error)) => replies.push_error(error),
            Err(CallError::Undecodable(error)) => {
                tracing::debug!(method = %command.method, %error, "api: undecodable batch command");
                replies.push_error(BAD_REQUEST);
            }
        }
    }
    Ok(replies.finish())
}

/// A batch request, each command still the raw JSON it was in the body.
struct BatchRequest<'a> {
    commands: Vec<&'a RawValue>,
}

impl<'a> BatchRequest<'a> {
    fn parse(body: &'a [u8], max_commands: usize) -> Result<Self, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let request = BatchSeed { max_commands }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(request)
    }
}

/// Deserializes a [`BatchRequest`] with the cap on its commands.
struct BatchSeed {
    max_commands: usize,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum BatchField {
    Commands,
    /// Centrifugo runs the commands concurrently when `parallel` is true. Running them in order
    /// gives the same replies in the same order, so the flag is accepted and changes nothing.
    Parallel,
    #[serde(other)]
    Unknown,
}

impl<'de> DeserializeSeed<'de> for BatchSeed {
    type Value = BatchRequest<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed {
    type Value = BatchRequest<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a batch request, {"commands":[…]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut commands = None;
        while let Some(field) = map.next_key()? {
            match field {
                BatchField::Commands if commands.is_some() => {
                    return Err(de::Error::duplicate_field("commands"));
                }
                BatchField::Commands => {
                    commands = Some(map.next_value_seed(CommandsSeed {
                        max_commands: self.max_commands,
                    })?);
                }
                BatchField::Parallel => {
                    map.next_value::<Option<bool>>()?;
                }
                // Like every other request, unknown fields are ignored.
                BatchField::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let commands = commands.ok_or_else(|| de::Error::missing_field("commands"))?;
        Ok(BatchRequest { commands })
    }
}

/// Deserializes the `commands` array, failing at the first command past the cap.
struct CommandsSeed {
    max_commands: usize,
}

impl<'de> DeserializeSeed<'de> for CommandsSeed {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CommandsSeed {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of commands")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut commands = Vec::new();
        while let Some(command) = seq.next_element()? {
            if commands.len() == self.max_commands {
                return Err(de::Error::custom(format_args!(
                    "more than {} commands in the batch (the limit is \
                     http_api.batch_max_commands)",
                    self.max_commands
                )));
            }
            commands.push(command);
        }
        Ok(commands)
    }
}

/// One command of a batch, `{"<method>":<params>}`.
struct Command<'a> {
    method: String,
    params: &'a RawValue,
}

impl<'a> Command<'a> {
    fn parse(raw: &'a RawValue) -> Result<Self, serde_json::Error> {
        serde_json::from_str(raw.get())
    }
}

impl<'de> Deserialize<'de> for Command<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(CommandVisitor)
    }
}

struct CommandVisitor;

impl<'de> Visitor<'de> for CommandVisitor {
    type Value = Command<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an object with one method and its params, e.g. {"publish":{…}}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(method) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let params = map.next_value()?;
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(2, &self));
        }
        Ok(Command { method, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, max_commands: usize) -> Result<Vec<&str>, String> {
        BatchRequest::parse(body.as_bytes(), max_commands)
            .map(|request| request.commands.iter().map(|c| c.get()).collect())
            .map_err(|error| error.to_string())
    }

    #[test]
    fn commands_stay_slices_of_the_body() {
        let body =
            r#"{"parallel":true,"commands":[{"publish":{"channel":"a"}}, {"info":{}}],"x":1}"#;
        let commands = parse(body, 2).expect("a batch");
        assert_eq!(
            commands,
            [r#"{"publish":{"channel":"a"}}"#, r#"{"info":{}}"#]
        );
        let within_body = body.as_bytes().as_ptr_range();
        for command in commands {
            assert!(
                within_body.contains(&command.as_ptr()),
                "{command} was copied"
            );
        }
        assert_eq!(parse(r#"{"commands":[],"parallel":null}"#, 1), Ok(vec![]));
    }

    #[test]
    fn the_cap_is_checked_while_parsing() {
        let error = parse(r#"{"commands":[{"info":{}},{"info":{}},{"info":{}}]}"#, 2)
            .expect_err("three commands, cap two");
        assert!(
            error.contains("more than 2 commands") && error.contains("http_api.batch_max_commands"),
            "{error}"
        );
        // Past the cap, the rest of the body is not even read: it need not be valid JSON.
        let error = parse(r#"{"commands":[{},{}, not json"#, 1).expect_err("cap one");
        assert!(error.contains("batch_max_commands"), "{error}");
    }

    #[test]
    fn a_request_that_is_not_a_batch_is_an_error() {
        for body in [
            "",
            "[]",
            r#"{"commands":{}}"#,
            r#"{"parallel":true}"#,
            r#"{"commands":[],"parallel":"yes"}"#,
            r#"{"commands":[],"commands":[]}"#,
            r#"{"commands":[]} trailing"#,
            r#"{"commands":[{"info":{}}"#,
        ] {
            assert!(parse(body, 10).is_err(), "{body:?} parsed");
        }
    }

    #[test]
    fn a_command_has_exactly_one_method() {
        let command = |json: &str| {
            let raw: Box<RawValue> = serde_json::from_str(json).expect("valid JSON");
            Command::parse(&raw)
                .map(|c| (c.method, c.params.get().to_owned()))
                .map_err(|error| error.to_string())
        };
        assert_eq!(
            command(r#"{"publish":{"channel":"a"}}"#),
            Ok(("publish".to_owned(), r#"{"channel":"a"}"#.to_owned()))
        );
        assert_eq!(
            command(r#"{"pub\u006cish":null}"#),
            Ok(("publish".to_owned(), "null".to_owned())),
            "escaped method names are decoded"
        );
        for json in [
            "{}",
            r#"{"publish":{},"info":{}}"#,
            "[]",
            "1",
            r#""publish""#,
        ] {
            assert!(command(json).is_err(), "{json} parsed");
        }
    }
}
