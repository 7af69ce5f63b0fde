//! `gyre-bench report <dir>`: the Markdown tables of a results directory written by
//! `scripts/bench-nchan.sh` (floor.json, `load` results tagged `reference` and `sweep`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::stats::median;

/// The number at `path` in a JSON result.
pub(crate) fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_f64()
}

/// `v` with `digits` decimals, or "–" when missing.
pub(crate) fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => format!("{v:.digits$}"),
        None => "–".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

/// Label order: gyre first, nchan second, anything else after.
fn order(label: &str) -> (u8, String) {
    let rank = match label {
        "gyre" => 0,
        "nchan" => 1,
        _ => 2,
    };
    (rank, label.to_string())
}

pub fn run(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", render(dir)?);
    Ok(())
}

pub fn render(dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut floor: Option<Value> = None;
    // (label) -> runs, in file order
    let mut reference: BTreeMap<(u8, String), Vec<Value>> = BTreeMap::new();
    let mut sweep: BTreeMap<(u8, String), Vec<Value>> = BTreeMap::new();
    for f in &files {
        let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(f)?) else {
            continue;
        };
        match (v["mode"].as_str(), v["tag"].as_str()) {
            (Some("floor"), _) => floor = Some(v),
            (Some("load"), Some("sweep")) => sweep
                .entry(order(v["label"].as_str().unwrap_or("")))
                .or_default()
                .push(v),
            (Some("load"), _) => reference
                .entry(order(v["label"].as_str().unwrap_or("")))
                .or_default()
                .push(v),
            _ => {}
        }
    }
    let mut out = String::new();
    let floor_of = |k: u64| -> Option<f64> {
        floor.as_ref()?["runs"]
            .as_array()?
            .iter()
            .find(|r| r["frames_per_write"].as_u64() == Some(k))
            .and_then(|r| r["cpu_us_per_frame"].as_f64())
    };

    if let Some(fl) = &floor {
        out.push_str(&format!(
            "Floor (`gyre-bench floor`): {} loopback connections, a {} B WebSocket frame (the JSON push of a {} B publication), one `write()` per connection per round; CPU of the writing thread:\n\n",
            fl["connections"], fl["frame_bytes"], fl["payload_bytes"]
        ));
        out.push_str("| frames per write() | CPU µs per frame | CPU µs per write() | frames/s (wall) |\n|---|---|---|---|\n");
        for r in fl["runs"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r["frames_per_write"],
                fmt(r["cpu_us_per_frame"].as_f64(), 3),
                fmt(r["cpu_us_per_write"].as_f64(), 3),
                fmt(r["frames_per_s"].as_f64(), 0)
            ));
        }
        out.push('\n');
    }

    if !reference.is_empty() {
        let labels: Vec<_> = reference.keys().cloned().collect();
        let rounds = reference.values().map(Vec::len).max().unwrap_or(0);
        let med = |label: &(u8, String), f: &dyn Fn(&Value) -> Option<f64>| -> Option<f64> {
            let mut vals: Vec<f64> = reference[label].iter().filter_map(f).collect();
            median(&mut vals)
        };
        // Two systems side by side get a ratio column (gyre/nchan, or e.g. cluster/single).
        let pair = labels.len() == 2;
        let with_floor = floor.is_some();
        out.push_str(&format!(
            "Reference load, median of {rounds} round(s):\n\n| metric |"
        ));
        for l in &labels {
            out.push_str(&format!(" {} |", l.1));
        }
        if pair {
            out.push_str(&format!(" {}/{} |", labels[0].1, labels[1].1));
        }
        if with_floor {
            out.push_str(&format!(" {}/floor (1 frame per write) |", labels[0].1));
        }
        out.push_str("\n|---|");
        for _ in 0..labels.len() + usize::from(pair) + usize::from(with_floor) {
            out.push_str("---|");
        }
        out.push('\n');
        type Getter = Box<dyn Fn(&Value) -> Option<f64>>;
        let p = |path: &'static [&'static str]| -> Getter {
            Box::new(move |v: &Value| num(&v["phases"][0], path))
        };
        let c =
            |path: &'static [&'static str]| -> Getter { Box::new(move |v: &Value| num(v, path)) };
        let ms = |path: &'static [&'static str]| -> Getter {
            Box::new(move |v: &Value| num(&v["phases"][0], path).map(|x| x / 1000.0))
        };
        let rows: Vec<(&str, Getter, usize, bool)> = vec![
            ("subscribers ready", c(&["connections", "ready"]), 0, false),
            (
                "connection failures",
                c(&["connections", "failed"]),
                0,
                false,
            ),
            (
                "connects/s",
                c(&["connections", "connects_per_s"]),
                0,
                false,
            ),
            (
                "server CPU µs per connect",
                c(&["connections", "server_cpu_us_per_connect"]),
                1,
                false,
            ),
            (
                "server RSS per idle connection (KiB)",
                c(&["memory", "server_rss_per_connection_kib"]),
                2,
                false,
            ),
            (
                "publications/s achieved (target in the command)",
                p(&["achieved_rate"]),
                0,
                false,
            ),
            ("deliveries expected", p(&["deliveries_expected"]), 0, false),
            ("deliveries lost", p(&["lost"]), 0, false),
            (
                "**server CPU µs per delivery**",
                p(&["server_cpu_us_per_delivery"]),
                3,
                true,
            ),
            (
                "server CPU % during the phase",
                p(&["server_cpu_percent"]),
                1,
                false,
            ),
            (
                "Redis CPU µs per publication",
                p(&["redis_cpu_us_per_publication"]),
                1,
                false,
            ),
            ("latency p50 (ms)", ms(&["latency", "p50_us"]), 2, false),
            ("latency p90 (ms)", ms(&["latency", "p90_us"]), 2, false),
            ("latency p99 (ms)", ms(&["latency", "p99_us"]), 2, false),
            ("latency max (ms)", ms(&["latency", "max_us"]), 2, false),
            ("deliveries/s", p(&["deliveries_per_s"]), 0, false),
            (
                "bench client CPU µs per delivery",
                p(&["client_cpu_us_per_delivery"]),
                3,
                false,
            ),
        ];
        for (name, get, digits, vs_floor) in &rows {
            out.push_str(&format!("| {name} |"));
            let vals: Vec<Option<f64>> = labels.iter().map(|l| med(l, get.as_ref())).collect();
            for v in &vals {
                out.push_str(&format!(" {} |", fmt(*v, *digits)));
            }
            if pair {
                out.push_str(&format!(" {} |", ratio(vals[0], vals[1])));
            }
            if with_floor {
                if *vs_floor {
                    out.push_str(&format!(
                        " {} (floor {} µs) |",
                        ratio(vals[0], floor_of(1)),
                        fmt(floor_of(1), 3)
                    ));
                } else {
                    out.push_str(" |");
                }
            }
            out.push('\n');
        }
        out.push_str("\nEvery round:\n\n| system | round | ready | server CPU µs/delivery | RSS KiB/conn | p50 ms | p99 ms | max ms | delivered | lost |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for (l, runs) in &reference {
            for (i, v) in runs.iter().enumerate() {
                let ph = &v["phases"][0];
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    l.1,
                    i + 1,
                    v["connections"]["ready"],
                    fmt(num(ph, &["server_cpu_us_per_delivery"]), 3),
                    fmt(num(v, &["memory", "server_rss_per_connection_kib"]), 2),
                    fmt(num(ph, &["latency", "p50_us"]).map(|x| x / 1000.0), 2),
                    fmt(num(ph, &["latency", "p99_us"]).map(|x| x / 1000.0), 2),
                    fmt(num(ph, &["latency", "max_us"]).map(|x| x / 1000.0), 2),
                    ph["delivered"],
                    ph["lost"],
                ));
            }
        }
        out.push('\n');
    }

    if !sweep.is_empty() {
        out.push_str("Saturation sweep (same connections, rising publish rate):\n\n| system | publish rate target/s | achieved/s | deliveries/s | server CPU % | server CPU µs/delivery | Redis CPU % | client CPU % | p50 ms | p99 ms | max ms | lost | conns closed |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (l, runs) in &sweep {
            for v in runs {
                for ph in v["phases"].as_array().into_iter().flatten() {
                    let wall = num(ph, &["wall_s"]).unwrap_or(0.0);
                    let pct = |key: &str| {
                        num(ph, &[key])
                            .filter(|_| wall > 0.0)
                            .map(|c| c / wall * 100.0)
                    };
                    out.push_str(&format!(
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                        l.1,
                        fmt(num(ph, &["rate"]), 0),
                        fmt(num(ph, &["achieved_rate"]), 0),
                        fmt(num(ph, &["deliveries_per_s"]), 0),
                        fmt(num(ph, &["server_cpu_percent"]), 0),
                        fmt(num(ph, &["server_cpu_us_per_delivery"]), 3),
                        fmt(pct("redis_cpu_s"), 0),
                        fmt(pct("client_cpu_s"), 0),
                        fmt(num(ph, &["latency", "p50_us"]).map(|x| x / 1000.0), 2),
                        fmt(num(ph, &["latency", "p99_us"]).map(|x| x / 1000.0), 2),
                        fmt(num(ph, &["latency", "max_us"]).map(|x| x / 1000.0), 1),
                        ph["lost"],
                        ph["connections_closed"],
                    ));
                }
            }
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables_with_medians_and_ratios() {
        let dir = std::env::temp_dir().join(format!("gyre-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let floor = serde_json::json!({"mode":"floor","connections":10,"frame_bytes":182,"payload_bytes":128,
            "runs":[{"frames_per_write":1,"cpu_us_per_frame":2.0,"cpu_us_per_write":2.0,"frames_per_s":1000.0}]});
        std::fs::write(dir.join("floor.json"), floor.to_string()).unwrap();
        for (label, cpus) in [("gyre", [4.0, 5.0, 6.0]), ("nchan", [8.0, 10.0, 12.0])] {
            for (i, cpu) in cpus.iter().enumerate() {
                let v = serde_json::json!({"mode":"load","label":label,"tag":"reference",
                    "connections":{"ready":10,"failed":0},"memory":{"server_rss_per_connection_kib":3.0},
                    "phases":[{"server_cpu_us_per_delivery":cpu,"latency":{"p50_us":1500,"p99_us":3000,"max_us":9000},"delivered":100,"lost":0}]});
                std::fs::write(dir.join(format!("ref-{i}-{label}.json")), v.to_string()).unwrap();
            }
        }
        let md = render(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(md.contains("| **server CPU µs per delivery** | 5.000 | 10.000 | 0.50× | 2.50× (floor 2.000 µs) |"), "{md}");
        assert!(
            md.contains("| latency p99 (ms) | 3.00 | 3.00 | 1.00× |"),
            "{md}"
        );
        assert!(md.contains("| 1 | 2.000 | 2.000 | 1000 |"), "{md}");
    }
}
