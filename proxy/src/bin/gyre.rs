//! `gyre`: placeholder binary until the proxy lands (issue 3).

fn main() {
    eprintln!(
        "gyre {}: the edge proxy is not built yet; the Redis module (libgyre.so) is usable today",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
