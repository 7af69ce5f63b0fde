//! The demo page at `/` in a real headless Chromium (Debian `chromium` driven by npm
//! `playwright-core`): two tabs see each other's messages and publications from the HTTP API.
//! Skipped with a message when Chromium or the npm packages are missing, except under CI.

use gyre_tests::*;
use serde_json::Value;

/// The demo's namespace as `config/demo.toml` has it: anonymous clients may do everything.
const DEMO_NAMESPACE: &str = r#"
[[channel.namespaces]]
name = "chat"
history_size = 100
history_ttl = "300s"
force_recovery = true
presence = true
join_leave = true
force_push_join_leave = true
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true
allow_publish_for_client = true
allow_publish_for_anonymous = true
allow_history_for_subscriber = true
allow_history_for_anonymous = true
allow_presence_for_subscriber = true
allow_presence_for_anonymous = true
"#;

#[test]
fn two_tabs_see_each_others_messages() {
    require_chromium();
    let gyre = GyreProcess::builder()
        .memory()
        .client_option("allow_anonymous_connect_without_token = true")
        .extra_toml(DEMO_NAMESPACE)
        .start();
    let output = SdkScript::node("demo_page.mjs")
        .gyre(&gyre)
        .arg("chromium", CHROMIUM)
        .run();
    let result: Value = serde_json::from_str(output.expect_success()).unwrap();
    let log = |tab: &str| -> Vec<String> {
        result[tab]
            .as_array()
            .unwrap_or_else(|| panic!("no log of tab {tab}: {result}"))
            .iter()
            .map(|line| line.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (a, b) = (log("a"), log("b"));
    assert!(
        b.iter().any(|line| line.starts_with("hello from tab A")),
        "tab B did not show tab A's message: {b:?}"
    );
    for (name, tab) in [("A", &a), ("B", &b)] {
        assert!(
            tab.iter().any(|line| line == "hello from the API"),
            "tab {name} did not show the API publication: {tab:?}"
        );
    }
}
