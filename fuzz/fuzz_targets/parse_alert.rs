//! libFuzzer target: `pregonero::fuzzing::trading_alert`, the trading-alert parser on any bytes
//! TradingView could post (the same invariants as the parser's in-suite fuzz test,
//! `random_alerts_never_panic_and_what_is_read_holds_together`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pregonero::fuzzing::trading_alert(data));
