//! Any bytes, as an authorized_keys file: every line judged, options parsed. Accepted options
//! must render to text that parses back to the same options.
#![no_main]

use keyportal::keys::{self, options, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(lines) = keys::validate_authorized_keys(data, &Policy::default()) {
        for verdict in lines {
            if let Ok(key) = verdict.result {
                if !key.options.is_empty() {
                    let rendered = key.options.to_string();
                    assert_eq!(options::parse(rendered.as_bytes()).expect("rendered options parse"), key.options);
                }
            }
        }
    }
});
