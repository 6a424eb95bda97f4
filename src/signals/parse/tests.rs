use super::*;

/// `(alert, ticker, price, signal type, indicator, timeframe)`.
type Case = (
    &'static str,
    &'static str,
    Option<f64>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

const CASES: &[Case] = &[
    // The seed's own format.
    (
        "🪙 Ticker: BINANCE:BTCUSDT\n💰 Precio: $67,890.50\n📈 Señal: Divergencia Alcista\n📊 Indicador: ADX DEF [APIDEVS]\n⏰ Temporalidad: 15",
        "BINANCE:BTCUSDT",
        Some(67_890.5),
        Some("Divergencia Alcista"),
        Some("ADX DEF [APIDEVS]"),
        Some("15m"),
    ),
    // The same without emoji, English labels, another order, an extra line.
    (
        "Indicator: ADX DEF [APIDEVS]\nSignal: Bullish divergence\nTicker: BINANCE:ETHUSDT\nPrice: 3456.78\nTimeframe: 4h\nGood luck!",
        "BINANCE:ETHUSDT",
        Some(3_456.78),
        Some("Bullish divergence"),
        Some("ADX DEF [APIDEVS]"),
        Some("4h"),
    ),
    // Spanish number format and a euro sign.
    (
        "Símbolo: BME:SAN\nPrecio actual: 4.123,45 €\nTipo de señal: Venta\nMarco temporal: 1D",
        "BME:SAN",
        Some(4_123.45),
        Some("Venta"),
        None,
        Some("1D"),
    ),
    // TradingView placeholders filled in: `{{ticker}}` has no exchange, `{{exchange}}` does.
    (
        "Exchange: NASDAQ\nTicker: AAPL\nClose: 189.91\nInterval: 240\nAction: buy",
        "NASDAQ:AAPL",
        Some(189.91),
        Some("buy"),
        None,
        Some("4h"),
    ),
    // No labels at all: the ticker from an EXCHANGE:SYMBOL word, the price from a `$` word.
    (
        "🟢 COMPRA BINANCE:SOLUSDT\n$145.20\nRSI [APIDEVS]",
        "BINANCE:SOLUSDT",
        Some(145.2),
        None,
        Some("RSI [APIDEVS]"),
        None,
    ),
    // A signal line before the ticker line, both unlabelled.
    (
        "🔴 Divergencia Bajista\n📍 BYBIT:XRPUSDT.P\n💵 $0,5123",
        "BYBIT:XRPUSDT.P",
        Some(0.5123),
        Some("Divergencia Bajista"),
        None,
        None,
    ),
    // Markdown bold labels.
    (
        "**Ticker:** OANDA:EURUSD\n**Price:** 1.08345\n**Signal:** SELL\n**TF:** 60",
        "OANDA:EURUSD",
        Some(1.08345),
        Some("SELL"),
        None,
        Some("1h"),
    ),
    // Label and value without a colon.
    (
        "Ticker COINBASE:BTCUSD\nSignal LONG\nPrice 68000",
        "COINBASE:BTCUSD",
        Some(68_000.0),
        Some("LONG"),
        None,
        None,
    ),
    // A tiny price with a decimal comma.
    (
        "Activo: BINANCE:PEPEUSDT\nPrecio: 0,00001234\nAlerta: Cruce de medias",
        "BINANCE:PEPEUSDT",
        Some(0.000_012_34),
        Some("Cruce de medias"),
        None,
        None,
    ),
    // Continuous futures symbols keep their `!`.
    (
        "Ticker: CME_MINI:ES1!\nPrice: 5,321.25\nSignal: Breakout",
        "CME_MINI:ES1!",
        Some(5_321.25),
        Some("Breakout"),
        None,
        None,
    ),
    // Lower case ticker and an `=` separator.
    (
        "ticker = binance:dogeusdt\nprice = 0.1612\ntype = short",
        "BINANCE:DOGEUSDT",
        Some(0.1612),
        Some("short"),
        None,
        None,
    ),
    // Windows line ends and trailing blanks.
    (
        "Ticker: KRAKEN:ADAEUR  \r\nPrecio: 0,45\r\nSeñal: Compra  \r\n",
        "KRAKEN:ADAEUR",
        Some(0.45),
        Some("Compra"),
        None,
        None,
    ),
    // JSON with TradingView placeholders filled in.
    (
        r#"{"ticker": "BTCUSDT", "exchange": "BINANCE", "close": 67890.5, "interval": "15", "signal": "buy", "indicator": "ADX DEF"}"#,
        "BINANCE:BTCUSDT",
        Some(67_890.5),
        Some("buy"),
        Some("ADX DEF"),
        Some("15m"),
    ),
    // JSON with snake_case keys and the price as a string.
    (
        r#"{"symbol": "NYSE:KO", "price": "61.02", "signal_type": "Take profit", "time_frame": "D"}"#,
        "NYSE:KO",
        Some(61.02),
        Some("Take profit"),
        None,
        Some("1D"),
    ),
    // JSON whose message holds the seed's text: the keys win, the text fills the rest.
    (
        r#"{"user_token": "abc123", "chart_id": "Q7w5R5x8", "message": "🪙 Ticker: BINANCE:BTCUSDT\n💰 $67,890\n📈 Divergencia Alcista"}"#,
        "BINANCE:BTCUSDT",
        Some(67_890.0),
        Some("Divergencia Alcista"),
        None,
        None,
    ),
    // The ticker in a sentence.
    (
        "Alert triggered on NSE:RELIANCE at 2,945.10\nStrategy: Supertrend",
        "NSE:RELIANCE",
        None,
        None,
        Some("Supertrend"),
        None,
    ),
    // Weekly timeframe and a pair label.
    (
        "Par: BITSTAMP:BTCUSD\nIntervalo: W\nAcción: Long",
        "BITSTAMP:BTCUSD",
        None,
        Some("Long"),
        None,
        Some("1W"),
    ),
];

#[test]
fn realistic_alerts_are_read() {
    for (text, ticker, price, signal, indicator, tf) in CASES {
        let s = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(s.ticker, *ticker, "ticker of {text:?}");
        assert_eq!(s.price, *price, "price of {text:?}");
        assert_eq!(s.signal_type.as_deref(), *signal, "signal of {text:?}");
        assert_eq!(s.indicator.as_deref(), *indicator, "indicator of {text:?}");
        assert_eq!(s.timeframe.as_deref(), *tf, "timeframe of {text:?}");
        let (exchange, symbol) = ticker.split_once(':').expect("cases name exchanges");
        assert_eq!(s.exchange.as_deref(), Some(exchange));
        assert_eq!(s.symbol, symbol);
    }
}

#[test]
fn a_ticker_without_an_exchange_is_the_symbol() {
    let s = parse("Ticker: AAPL\nPrice: 190").expect("parses");
    assert_eq!(
        (s.ticker.as_str(), s.exchange, s.symbol.as_str()),
        ("AAPL", None, "AAPL")
    );
}

#[test]
fn what_cannot_be_read_says_why() {
    assert_eq!(parse("  \n "), Err(ParseError::Empty));
    assert_eq!(parse("Price: 12\nSignal: buy"), Err(ParseError::NoTicker));
    assert_eq!(
        parse("Ticker: {{ticker}}\nPrice: {{close}}"),
        Err(ParseError::Placeholder)
    );
    assert_eq!(parse(r#"{"price": 3}"#), Err(ParseError::NoTicker));
    assert_eq!(parse("[1, 2]"), Err(ParseError::NoTicker));
}

#[test]
fn prices_in_every_notation() {
    for (text, want) in [
        ("$67,890.50", 67_890.5),
        ("67.890,50", 67_890.5),
        ("1,234", 1_234.0),
        ("0,123", 0.123),
        ("1.234.567", 1_234_567.0),
        ("1,234,567.8", 1_234_567.8),
        ("12.5 USDT", 12.5),
        ("€ 3,5", 3.5),
    ] {
        assert_eq!(parse_price(text), Some(want), "{text}");
    }
    assert_eq!(parse_price("n/a"), None);
}

#[test]
fn nothing_panics_on_odd_text() {
    for text in [
        "Ticker:",
        "ticker",
        "::",
        "Ticker: :",
        "Precio: ,,,",
        "İİİ: x",
        "Ticker: İİİİİİİİİİİİİİİİ",
        "Ticker: 🪙",
        "\u{0}\u{1}",
        "{\"ticker\": null}",
        "{\"ticker\": {\"a\": 1}}",
    ] {
        let _ = parse(text);
    }
}

/// A fuzzer in the test suite: 20,000 alerts stitched at random from real fragments, labels,
/// separators, emoji, odd Unicode and raw bytes. None may panic, and what is read must hold
/// together: a ticker is upper case without spaces, and is `exchange:symbol` when both exist.
#[test]
fn random_alerts_never_panic_and_what_is_read_holds_together() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    const PIECES: &[&str] = &[
        "Ticker",
        "Símbolo",
        "Precio",
        "Price",
        "Señal",
        "Signal",
        "TF",
        "Indicador",
        "tipo de señal",
        "Exchange",
        "close",
        "interval",
        ":",
        "=",
        " - ",
        "**",
        "🪙",
        "💰",
        "📈",
        "⏰",
        "🟢",
        "\n",
        "\r\n",
        " ",
        "\t",
        "BINANCE:BTCUSDT",
        "binance:ethusdt",
        "NYSE:KO",
        "CME_MINI:ES1!",
        "AAPL",
        "$67,890.50",
        "67.890,50 €",
        "0,00001234",
        "1.234.567",
        "buy",
        "SELL",
        "Divergencia Alcista",
        "[APIDEVS]",
        "{{ticker}}",
        "{",
        "}",
        "\"",
        "[",
        "]",
        ",",
        "İ",
        "ß",
        "\u{200b}",
        "\u{0}",
        "ẞ",
        "ﬁ",
        "{\"ticker\": \"BTCUSDT\", \"close\": 1}",
        "15",
        "240",
        "D",
        "::",
        "..",
    ];
    let mut rng = StdRng::seed_from_u64(0x005E_ED0F_A1E7);
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..rng.random_range(0..24) {
            if rng.random_bool(0.05) {
                text.push(char::from_u32(rng.random_range(0..0x3_0000)).unwrap_or('?'));
            } else {
                text.push_str(PIECES[rng.random_range(0..PIECES.len())]);
            }
        }
        if let Ok(s) = parse(&text) {
            assert!(
                !s.ticker.is_empty() && !s.symbol.is_empty(),
                "{text:?} → {s:?}"
            );
            assert!(!s.ticker.contains(char::is_whitespace), "{text:?} → {s:?}");
            assert_eq!(s.ticker, s.ticker.to_uppercase(), "{text:?} → {s:?}");
            if let Some(exchange) = &s.exchange {
                assert_eq!(s.ticker, format!("{exchange}:{}", s.symbol), "{text:?}");
            }
            assert!(s.price.is_none_or(f64::is_finite), "{text:?} → {s:?}");
        }
    }
}
