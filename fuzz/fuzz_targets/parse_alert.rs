//! libFuzzer target for the trading-alert parser: any bytes, as TradingView could post them.
//! Nothing may panic, and what is read must hold together (the same invariants as the parser's
//! in-suite fuzz test, `random_alerts_never_panic_and_what_is_read_holds_together`).
#![no_main]

#[path = "../../src/signals/parse.rs"]
#[allow(dead_code)]
mod parse;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(s) = parse::parse(&text) {
        assert!(!s.ticker.is_empty() && !s.symbol.is_empty());
        assert!(!s.ticker.contains(char::is_whitespace));
        assert_eq!(s.ticker, s.ticker.to_uppercase());
        if let Some(exchange) = &s.exchange {
            assert_eq!(s.ticker, format!("{exchange}:{}", s.symbol));
        }
        assert!(s.price.is_none_or(f64::is_finite));
    }
});
