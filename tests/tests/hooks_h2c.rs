//! `http.h2c`: gyre calls an `http://` backend over HTTP/2 without TLS (prior knowledge). The
//! backend here is a small hyper server that speaks only HTTP/2 and records the protocol
//! version of each request.

use std::sync::{Arc, Mutex};

use gyre_tests::GyreProcess;
use gyre_tests::ws_client::{WsClient, WsOptions};
use serde_json::json;

#[test]
fn h2c_calls_an_http2_only_backend() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let versions: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::clone(&versions);
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                    seen.lock()
                        .unwrap()
                        .push(format!("{:?}", request.version()));
                    async move {
                        let body = br#"{"result":{"user":"h2user","data":{"via":"h2c"}}}"#;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(body)),
                        ))
                    }
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    let gyre = GyreProcess::builder()
        .extra_toml(&format!(
            "[client.proxy.connect]\nenabled = true\nendpoint = \"http://127.0.0.1:{port}/connect\"\n[client.proxy.connect.http]\nh2c = true\n"
        ))
        .start();
    for _ in 0..2 {
        let mut client = WsClient::connect_with(&gyre.ws_url(), WsOptions::default()).unwrap();
        client.send_text(&json!({"id": 1, "connect": {}}).to_string());
        let reply = client.reply(1).json().clone();
        assert_eq!(reply["connect"]["data"], json!({"via": "h2c"}), "{reply}");
    }
    assert_eq!(*versions.lock().unwrap(), ["HTTP/2.0", "HTTP/2.0"]);
}
