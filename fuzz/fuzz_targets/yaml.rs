//! The YAML reader's budget on arbitrary text: anchors, aliases and merge keys may describe far
//! more than the text holds, and the reader must stop at its byte budget instead of building it.
//! Run with `-rss_limit_mb`: a budget that leaks shows as an out-of-memory crash, not a pass.
#![no_main]

use gitmoor::spec::yaml::parse_within;
use libfuzzer_sys::fuzz_target;

/// A small budget, so the fuzzer reaches it with short inputs (the default is 16 MiB).
const BUDGET: u64 = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = parse_within(text, "compose/app/compose.yaml", BUDGET) {
        let shown = e.to_string();
        assert!(shown.starts_with("compose/app/compose.yaml"), "{shown}");
    }
});
