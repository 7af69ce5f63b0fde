//! Which headers travel to the backend with a hook call.
//!
//! A connection keeps ([`ClientContext`], with its meta) only the headers some proxy forwards:
//! those of its own
//! request (WebSocket upgrade, HTTP stream or SSE request, SockJS request) named in an
//! `http_headers` list, and those its client sent in the connect command (`ConnectRequest.headers`,
//! "headers emulation") named in an `emulated_headers` list. Nothing else is stored, and nothing
//! at all (one empty pointer) when no proxy forwards headers.
//!
//! Each call then sends ([`Rules::outgoing`]) its proxy's static headers, overridden by the
//! emulated headers it lists, overridden by the real headers it lists: a client can forge an
//! emulated header, not a real one set by a gateway in front of Gyre.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Headers never forwarded even when listed: they describe the hop, not the client, and the
/// HTTP client sets its own.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A list of header names from the config, parsed once (lowercase, as [`HeaderName`] is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names(Vec<HeaderName>);

impl Names {
    /// Parses configured names; an invalid one is an error naming it.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<Self, String> {
        let mut out = Vec::new();
        for name in names {
            let parsed = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))?;
            if HOP_HEADERS.contains(&parsed.as_str()) {
                continue;
            }
            if !out.contains(&parsed) {
                out.push(parsed);
            }
        }
        Ok(Self(out))
    }

    /// Adds the names of `other` not listed yet.
    pub fn extend(&mut self, other: &Names) {
        for name in &other.0 {
            if !self.0.contains(name) {
                self.0.push(name.clone());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.0.contains(name)
    }
}

/// What one connection keeps for its hook calls: forwarded headers and its meta. Boxed, and
/// absent while there is nothing to keep: most connections pay one null pointer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientContext(Option<Box<Kept>>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Kept {
    /// From the connection's request, in request order (a name may repeat).
    transport: Vec<(HeaderName, HeaderValue)>,
    /// From the connect command.
    emulated: Vec<(HeaderName, HeaderValue)>,
    /// The connection's meta (connect proxy result or token `meta`), never sent to clients.
    meta: bytes::Bytes,
}

impl ClientContext {
    /// The headers of `request` that some proxy forwards (`names`: the union of every
    /// `http_headers` list).
    pub fn capture(names: &Names, request: &HeaderMap) -> Self {
        if names.is_empty() {
            return Self(None);
        }
        let transport: Vec<(HeaderName, HeaderValue)> = names
            .0
            .iter()
            .flat_map(|name| {
                request
                    .get_all(name)
                    .iter()
                    .map(move |value| (name.clone(), value.clone()))
            })
            .collect();
        if transport.is_empty() {
            return Self(None);
        }
        Self(Some(Box::new(Kept {
            transport,
            ..Default::default()
        })))
    }

    /// The connection's meta; empty when none (or no proxy sends it).
    pub fn meta(&self) -> &bytes::Bytes {
        static EMPTY: bytes::Bytes = bytes::Bytes::new();
        self.0.as_ref().map_or(&EMPTY, |kept| &kept.meta)
    }

    /// Replaces the connection's meta (an empty one is not stored).
    pub fn set_meta(&mut self, meta: bytes::Bytes) {
        if meta.is_empty() && self.0.is_none() {
            return;
        }
        self.0.get_or_insert_with(Default::default).meta = meta;
    }

    /// Keeps the connect command's emulated headers that some proxy forwards (`names`: the
    /// union of every `emulated_headers` list). Names are matched without regard to case;
    /// names or values that cannot be HTTP headers are dropped.
    pub fn add_emulated(&mut self, names: &Names, headers: &HashMap<String, String>) {
        if names.is_empty() || headers.is_empty() {
            return;
        }
        let mut emulated: Vec<(HeaderName, HeaderValue)> = headers
            .iter()
            .filter_map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
                if !names.contains(&name) {
                    return None;
                }
                Some((name, HeaderValue::from_str(value).ok()?))
            })
            .collect();
        if emulated.is_empty() {
            return;
        }
        // A map has no order: sort so that calls are reproducible.
        emulated.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let kept = self.0.get_or_insert_with(Default::default);
        kept.emulated = emulated;
    }
}

/// One proxy's header rules, from its config.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `http_headers`.
    pub forward: Names,
    /// `emulated_headers`.
    pub emulated: Names,
    /// `http.static_headers` (HTTP) or `grpc.static_metadata` and the credentials key (GRPC).
    pub fixed: Vec<(HeaderName, HeaderValue)>,
}

impl Rules {
    /// The headers of one call for a client: fixed ones, then emulated ones the proxy lists,
    /// then real ones it lists; a later source replaces every value of a name an earlier one set,
    /// so a forged emulated header never shadows a real one.
    pub fn outgoing(&self, client: &ClientContext) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = self.fixed.clone();
        let Some(kept) = client.0.as_deref() else {
            return out;
        };
        let mut replace = |source: &[(HeaderName, HeaderValue)], listed: &Names| {
            let chosen: Vec<&(HeaderName, HeaderValue)> = source
                .iter()
                .filter(|(name, _)| listed.contains(name))
                .collect();
            out.retain(|(name, _)| !chosen.iter().any(|(n, _)| n == name));
            out.extend(chosen.into_iter().cloned());
        };
        replace(&kept.emulated, &self.emulated);
        replace(&kept.transport, &self.forward);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Names {
        Names::parse(
            list.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .iter(),
        )
        .unwrap()
    }

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn pairs(headers: &[(HeaderName, HeaderValue)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn only_listed_request_headers_are_kept() {
        let kept = ClientContext::capture(
            &names(&["Cookie", "X-Real-Ip"]),
            &request(&[
                ("cookie", "a=1"),
                ("Cookie", "b=2"),
                ("user-agent", "x"),
                ("authorization", "secret"),
            ]),
        );
        let rules = Rules {
            forward: names(&["cookie"]),
            ..Default::default()
        };
        assert_eq!(
            pairs(&rules.outgoing(&kept)),
            [
                ("cookie".into(), "a=1".into()),
                ("cookie".into(), "b=2".into())
            ]
        );
        assert_eq!(
            ClientContext::capture(&names(&[]), &request(&[("cookie", "a")])),
            ClientContext::default(),
            "nothing is stored when no proxy forwards headers"
        );
        assert_eq!(
            ClientContext::capture(&names(&["cookie"]), &request(&[("origin", "o")])),
            ClientContext::default()
        );
    }

    #[test]
    fn real_headers_win_over_emulated_which_win_over_static() {
        let mut kept = ClientContext::capture(
            &names(&["authorization"]),
            &request(&[("authorization", "real")]),
        );
        let emulated: HashMap<String, String> = [
            ("Authorization", "forged"),
            ("X-Token", "t"),
            ("X-Static", "from-client"),
            ("Bad Name", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        kept.add_emulated(
            &names(&["authorization", "x-token", "x-static", "x-other"]),
            &emulated,
        );
        let rules = Rules {
            forward: names(&["Authorization"]),
            emulated: names(&["Authorization", "X-Token"]),
            fixed: vec![
                (
                    HeaderName::from_static("x-static"),
                    HeaderValue::from_static("fixed"),
                ),
                (
                    HeaderName::from_static("x-token"),
                    HeaderValue::from_static("fixed"),
                ),
            ],
        };
        let out = pairs(&rules.outgoing(&kept));
        assert_eq!(
            out,
            [
                ("x-static".into(), "fixed".into()),
                ("x-token".into(), "t".into()),
                ("authorization".into(), "real".into()),
            ],
            "x-static is not in emulated_headers, so the client cannot replace it"
        );
    }

    #[test]
    fn hop_headers_are_never_forwarded_and_bad_names_are_refused() {
        assert_eq!(
            names(&["Host", "Content-Length", "Cookie"]),
            names(&["cookie"])
        );
        assert!(Names::parse([&"Bad Name".to_owned()]).is_err());
    }
}
