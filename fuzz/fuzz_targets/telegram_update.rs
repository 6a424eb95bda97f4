//! libFuzzer target: `pregonero::fuzzing::telegram_update` (see there for what it feeds and checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pregonero::fuzzing::telegram_update(data));
