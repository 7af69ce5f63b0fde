//! A configuration file, in each of the three syntaxes, through the whole load (parse, schema,
//! validation): an operator's typo must give errors naming keys, never a panic.
#![no_main]

use gyre_proxy::config::{ConfigFile, Format, load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let format = match selector % 3 {
        0 => Format::Toml,
        1 => Format::Json,
        _ => Format::Yaml,
    };
    let _ = load(Some(ConfigFile { text, format }), Vec::new(), &[]);
});
