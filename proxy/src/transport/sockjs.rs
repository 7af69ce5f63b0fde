//! `/connection/sockjs`: the SockJS protocol for centrifuge-js's `sockjs` transport.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

use crate::protocol::node::Node;
use crate::server::{Body, text};

pub async fn handle(
    _node: Arc<Node>,
    _sessions: TaskTracker,
    _request: Request<Incoming>,
) -> Response<Body> {
    text(StatusCode::NOT_IMPLEMENTED, "SockJS is not implemented yet")
}
