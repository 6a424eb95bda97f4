//! libFuzzer target: `pregonero::fuzzing::config` (see there for what it feeds and checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pregonero::fuzzing::config(data));
