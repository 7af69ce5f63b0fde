//! `POST /api` with the method in the body: the API of Centrifugo before v5, which v6 still
//! serves and which older `cent` clients and hand-written backends speak.
//!
//! The body is one or more commands written one after the other (JSON streaming, usually one
//! per line): `{"id":1,"method":"publish","params":{…}}`. `method` is a name (any case) or the
//! number of Centrifugo's old protobuf enum (`0` publish … `12` refresh); `id` is optional and
//! echoed. The answer (HTTP 200) has one reply per command, in order, separated by `\n`:
//! `{"id":1,"result":{…}}` or `{"id":1,"error":{"code":…,"message":…}}`. A command whose params
//! are not its method's request gets error 107 and the others still run; a body that is not a
//! stream of command objects is HTTP 400 and nothing runs.
//!
//! As in Centrifugo, a command without `method` is a publish (the enum's zero value).

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;

use super::reply::push_json;
use super::{ApiError, BAD_REQUEST, CallError, METHOD_NOT_FOUND, methods};
use crate::protocol::node::Node;

/// Why a body is not a legacy API request.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is empty: send one or more {{\"method\":…,\"params\":…}} commands")]
    Empty,
    #[error("the body is not a stream of {{\"method\":…,\"params\":…}} commands: {0}")]
    Json(#[from] serde_json::Error),
    #[error("more than {0} commands in one request (http_api.batch_max_commands)")]
    TooMany(usize),
}

/// Runs every command of `body`; the replies, one per line.
pub async fn run(node: &Node, body: &[u8]) -> Result<Vec<u8>, BodyError> {
    let commands = parse(body, node.config.http_api.batch_max_commands as usize)?;
    let mut out = Vec::with_capacity(body.len());
    for (i, command) in commands.into_iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let reply = match command.method.name() {
            Some(name) => {
                let params = command.params.as_ref().map_or("{}", |p| p.get());
                match methods::call(node, name, params.as_bytes()).await {
                    Ok(result) => Ok(result),
                    Err(CallError::Api(error)) => Err(error),
                    Err(CallError::Undecodable(error)) => {
                        tracing::debug!(method = name, %error, "api: undecodable legacy params");
                        Err(BAD_REQUEST)
                    }
                }
            }
            None => Err(METHOD_NOT_FOUND),
        };
        write_reply(&mut out, command.id, reply);
    }
    Ok(out)
}

/// Every command of the body, decoded up front so that a malformed body runs nothing.
fn parse(body: &[u8], max_commands: usize) -> Result<Vec<Command<'_>>, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    let mut commands = Vec::new();
    for raw in serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>() {
        if commands.len() == max_commands {
            return Err(BodyError::TooMany(max_commands));
        }
        let raw = raw?;
        // serde's structs also take the positional array form (`[1]` as `{"id":1}`); a
        // command is an object.
        if !raw.get().starts_with('{') {
            let unexpected = de::Unexpected::Other("a non-object JSON value");
            let error = de::Error::invalid_type(unexpected, &"a command object");
            return Err(BodyError::Json(error));
        }
        commands.push(serde_json::from_str(raw.get())?);
    }
    Ok(commands)
}

fn write_reply(out: &mut Vec<u8>, id: u32, reply: Result<Box<RawValue>, ApiError>) {
    out.push(b'{');
    if id != 0 {
        out.extend_from_slice(format!("\"id\":{id},").as_bytes());
    }
    match reply {
        Ok(result) => {
            out.extend_from_slice(b"\"result\":");
            out.extend_from_slice(result.get().as_bytes());
        }
        Err(error) => {
            out.extend_from_slice(b"\"error\":");
            push_json(out, &error);
        }
    }
    out.push(b'}');
}

#[derive(Deserialize)]
struct Command<'a> {
    #[serde(default)]
    id: u32,
    #[serde(default)]
    method: Method,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

/// The method as a name or as its number in Centrifugo's old `MethodType` enum.
#[derive(Debug, Default, PartialEq, Eq)]
enum Method {
    /// Lowercase, as `methods::call` knows them.
    Name(String),
    Number(u64),
    /// No `method` key: the enum's zero value.
    #[default]
    Absent,
}

/// Centrifugo's old enum, by number: the methods Gyre has. The others (10 rpc, 14 and up:
/// Centrifugo PRO) are "method not found", as is any name Gyre lacks.
const NUMBERED: &[(u64, &str)] = &[
    (0, "publish"),
    (1, "broadcast"),
    (2, "unsubscribe"),
    (3, "disconnect"),
    (4, "presence"),
    (5, "presence_stats"),
    (6, "history"),
    (7, "history_remove"),
    (8, "channels"),
    (9, "info"),
    (11, "subscribe"),
    (12, "refresh"),
];

impl Method {
    fn name(&self) -> Option<&str> {
        let number = match self {
            Method::Name(name) => {
                // `batch` is the new API's: not a legacy method, and never nested here.
                return NUMBERED
                    .iter()
                    .find(|(_, known)| known == name)
                    .map(|(_, known)| *known);
            }
            Method::Number(n) => *n,
            Method::Absent => 0,
        };
        NUMBERED
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, name)| *name)
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MethodVisitor;
        impl Visitor<'_> for MethodVisitor {
            type Value = Method;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a method name or number")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Method, E> {
                Ok(Method::Name(name.to_ascii_lowercase()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Method, E> {
                Ok(Method::Number(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Method, E> {
                Err(E::invalid_value(de::Unexpected::Signed(n), &self))
            }
        }
        deserializer.deserialize_any(MethodVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn methods(body: &str) -> Vec<(u32, Option<String>, Option<String>)> {
        parse(body.as_bytes(), 100)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|c| {
                let name = c.method.name().map(str::to_owned);
                (c.id, name, c.params.map(|p| p.get().to_owned()))
            })
            .collect()
    }

    #[test]
    fn a_stream_of_commands_by_name_number_or_neither() {
        let body = r#"{"method":"publish","params":{"channel":"a","data":1}}
            {"id":7,"method":"PRESENCE_STATS","params":{"channel":"a"}}
            {"method":9}{"params":{"channel":"b","data":2}}
            {"method":"batch","params":{}} {"method":10} {"method":"rpc"}"#;
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            methods(body),
            [
                (0, some("publish"), some(r#"{"channel":"a","data":1}"#)),
                (7, some("presence_stats"), some(r#"{"channel":"a"}"#)),
                (0, some("info"), None),
                (0, some("publish"), some(r#"{"channel":"b","data":2}"#)),
                (0, None, some("{}")),
                (0, None, None),
                (0, None, None),
            ]
        );
    }

    #[test]
    fn bodies_that_are_not_commands() {
        for (body, wanted) in [
            ("", "empty"),
            (" \n", "empty"),
            ("{\"method\":", "EOF"),
            ("[1]", "invalid type"),
            ("{} 5", "invalid type"),
            (r#"{"method":true}"#, "a method name or number"),
            (r#"{"method":-1}"#, "a method name or number"),
            (r#"{"id":"x"}"#, "invalid type"),
        ] {
            let error = parse(body.as_bytes(), 100).err().map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|e| e.contains(wanted)),
                "{body:?}: {error:?}"
            );
        }
        let three = "{}{}{}";
        assert!(parse(three.as_bytes(), 3).is_ok());
        assert!(matches!(
            parse(three.as_bytes(), 2),
            Err(BodyError::TooMany(2))
        ));
    }

    #[test]
    fn replies_carry_the_id_when_there_is_one() {
        let mut out = Vec::new();
        let result = RawValue::from_string(r#"{"offset":1}"#.to_owned()).unwrap();
        write_reply(&mut out, 0, Ok(result));
        out.push(b'\n');
        write_reply(&mut out, 3, Err(METHOD_NOT_FOUND));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "{\"result\":{\"offset\":1}}\n{\"id\":3,\"error\":{\"code\":104,\"message\":\"method not found\"}}"
        );
    }
}
