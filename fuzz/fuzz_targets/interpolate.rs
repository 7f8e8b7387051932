//! Interpolation on arbitrary templates and variables: no panic, no stack exhaustion, and a
//! failure never quotes a variable's value.
#![no_main]

use gitmoor::spec::interpolate::{interpolate, interpolate_detailed};
use libfuzzer_sys::fuzz_target;

const MARK: &str = "VALUE\u{1}MARK";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `template \0 NAME=value \0 NAME=value ...`
    let mut parts = text.split('\0');
    let template = parts.next().unwrap_or_default();
    let vars: Vec<(String, String)> = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = |name: &str| -> Option<String> {
        if name == "MARKED" {
            return Some(MARK.to_string());
        }
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    let a = interpolate(template, &lookup);
    let b = interpolate_detailed(template, &lookup);
    assert_eq!(a.is_ok(), b.is_ok());
    if let Err(e) = a {
        if !template.contains(MARK) {
            assert!(!e.to_string().contains(MARK), "a value in an error: {e}");
        }
    }
});
