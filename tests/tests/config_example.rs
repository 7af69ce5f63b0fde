//! `redis.conf.example` stays true: Redis accepts every line of it with the module, the values it
//! shows are the module's defaults, and it names every `gyre.*` setting the module registers.

use std::collections::BTreeMap;

use gyre_tests::*;

/// The directives of the example (comments and blank lines dropped), as `name -> value`.
fn example_directives() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(workspace_root().join("redis.conf.example"))
        .expect("read redis.conf.example");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.split_once(' ').unwrap_or((line, ""));
            (name.to_string(), value.trim().to_string())
        })
        .collect()
}

fn gyre_configs(con: &mut Connection) -> BTreeMap<String, String> {
    let pairs = as_strings(&cmd(con, &["CONFIG", "GET", "gyre.*"]));
    pairs
        .chunks(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}

#[test]
fn example_config_loads_and_names_every_setting() {
    let directives = example_directives();
    assert_eq!(
        directives.first().map(|(name, _)| name.as_str()),
        Some("loadmodule"),
        "the example starts with the loadmodule line"
    );

    // Command-line options are read like config lines, in order, so the example's module
    // settings follow its loadmodule line exactly as in a redis.conf.
    let mut args = Vec::new();
    for (name, value) in &directives {
        args.push(format!("--{name}"));
        if name == "loadmodule" {
            args.push(module_path().to_str().expect("utf-8 path").to_string());
        } else {
            args.push(value.clone());
        }
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = RedisServer::builder()
        .without_module()
        .args(&arg_refs)
        .start();
    let mut con = server.connection();

    let example: BTreeMap<String, String> = directives
        .into_iter()
        .filter(|(name, _)| name.starts_with("gyre."))
        .collect();
    let loaded = gyre_configs(&mut con);
    assert_eq!(
        example, loaded,
        "redis.conf.example must show every gyre.* setting with the value Redis reports"
    );

    let defaults = gyre_configs(&mut RedisServer::start().connection());
    assert_eq!(
        example, defaults,
        "the example documents the defaults; a changed default must change the example too"
    );

    let (offset, epoch) = publish_hist(&mut con, "chat:1", "{}", 10, 60);
    assert_eq!((offset, epoch.len()), (1, 8));
}
