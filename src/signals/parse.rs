//! Reading a trading alert: the seed's multi-line texts (labels in Spanish or English, with or
//! without emoji, in any order, with extra lines), TradingView's `{{placeholder}}` messages
//! once filled in, and JSON documents.
//!
//! Only the ticker is required; a text without one is an error that the caller stores with the
//! raw text, so no alert is ever dropped.
use serde_json::Value;

/// What an alert says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signal {
    /// `EXCHANGE:SYMBOL` when the exchange is known, else the symbol.
    pub ticker: String,
    /// `BINANCE` in `BINANCE:BTCUSDT`.
    pub exchange: Option<String>,
    /// `BTCUSDT` in `BINANCE:BTCUSDT`.
    pub symbol: String,
    /// The price the alert names.
    pub price: Option<f64>,
    /// As written: `Divergencia Alcista`, `BUY`, `Long entry`.
    pub signal_type: Option<String>,
    /// `ADX DEF [APIDEVS]`.
    pub indicator: Option<String>,
    /// `15m`, `1h`, `1D` (TradingView's `{{interval}}` minutes are written as such).
    pub timeframe: Option<String>,
}

/// Why an alert could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but white space.
    #[error("the alert is empty")]
    Empty,
    /// A `{{placeholder}}` TradingView did not fill in (a typo in the alert's message).
    #[error("the alert still holds a {{{{placeholder}}}} TradingView did not fill in")]
    Placeholder,
    /// No ticker: no `Ticker:` line and no `EXCHANGE:SYMBOL` anywhere.
    #[error("no ticker: write a `Ticker: EXCHANGE:SYMBOL` line (or use {{{{ticker}}}})")]
    NoTicker,
}

impl ParseError {
    /// Stable code stored with the raw alert.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Placeholder => "unfilled-placeholder",
            Self::NoTicker => "no-ticker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Ticker,
    Exchange,
    Price,
    Signal,
    Indicator,
    Timeframe,
}

/// Labels, lower case, longest first within a field where one starts another.
const LABELS: &[(&str, Field)] = &[
    ("tipo de señal", Field::Signal),
    ("tipo de senal", Field::Signal),
    ("tipo de alerta", Field::Signal),
    ("signal type", Field::Signal),
    ("precio actual", Field::Price),
    ("precio de cierre", Field::Price),
    ("current price", Field::Price),
    ("marco temporal", Field::Timeframe),
    ("temporalidad", Field::Timeframe),
    ("timeframe", Field::Timeframe),
    ("time frame", Field::Timeframe),
    ("intervalo", Field::Timeframe),
    ("interval", Field::Timeframe),
    ("período", Field::Timeframe),
    ("periodo", Field::Timeframe),
    ("tf", Field::Timeframe),
    ("ticker", Field::Ticker),
    ("símbolo", Field::Ticker),
    ("simbolo", Field::Ticker),
    ("symbol", Field::Ticker),
    ("activo", Field::Ticker),
    ("asset", Field::Ticker),
    ("pair", Field::Ticker),
    ("par", Field::Ticker),
    ("exchange", Field::Exchange),
    ("mercado", Field::Exchange),
    ("bolsa", Field::Exchange),
    ("precio", Field::Price),
    ("price", Field::Price),
    ("close", Field::Price),
    ("cierre", Field::Price),
    ("señal", Field::Signal),
    ("senal", Field::Signal),
    ("signal", Field::Signal),
    ("acción", Field::Signal),
    ("accion", Field::Signal),
    ("action", Field::Signal),
    ("alerta", Field::Signal),
    ("alert", Field::Signal),
    ("tipo", Field::Signal),
    ("type", Field::Signal),
    ("side", Field::Signal),
    ("indicador", Field::Indicator),
    ("indicator", Field::Indicator),
    ("estrategia", Field::Indicator),
    ("strategy", Field::Indicator),
];

/// Words that make an unlabelled line the signal's type.
const SIGNAL_WORDS: &[&str] = &[
    "buy",
    "sell",
    "long",
    "short",
    "compra",
    "venta",
    "alcista",
    "bajista",
    "bullish",
    "bearish",
    "divergencia",
    "divergence",
    "breakout",
    "ruptura",
    "cruce",
    "cross",
    "take profit",
    "stop loss",
];

#[derive(Default)]
struct Found {
    ticker: Option<String>,
    exchange: Option<String>,
    price: Option<f64>,
    signal: Option<String>,
    indicator: Option<String>,
    timeframe: Option<String>,
}

impl Found {
    fn set(&mut self, field: Field, value: &str) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        match field {
            Field::Ticker => keep(&mut self.ticker, clean_ticker(value)),
            Field::Exchange => keep(&mut self.exchange, clean_exchange(value)),
            Field::Price => {
                if self.price.is_none() {
                    self.price = parse_price(value);
                }
            }
            Field::Signal => keep(&mut self.signal, Some(value.to_owned())),
            Field::Indicator => keep(&mut self.indicator, Some(value.to_owned())),
            Field::Timeframe => keep(&mut self.timeframe, Some(timeframe(value))),
        }
    }

    fn finish(self) -> Result<Signal, ParseError> {
        let ticker = self.ticker.ok_or(ParseError::NoTicker)?;
        let (exchange, symbol) = match ticker.split_once(':') {
            Some((exchange, symbol)) => (Some(exchange.to_owned()), symbol.to_owned()),
            None => (self.exchange, ticker),
        };
        let ticker = match &exchange {
            Some(exchange) => format!("{exchange}:{symbol}"),
            None => symbol.clone(),
        };
        Ok(Signal {
            ticker,
            exchange,
            symbol,
            price: self.price,
            signal_type: self.signal,
            indicator: self.indicator,
            timeframe: self.timeframe,
        })
    }
}

/// The first value found wins.
fn keep(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = value;
    }
}

/// Reads an alert: JSON when `body` is a JSON object, text otherwise (TradingView posts JSON
/// only when the alert's message is valid JSON).
pub fn parse(body: &str) -> Result<Signal, ParseError> {
    let body = body.trim();
    if body.is_empty() {
        return Err(ParseError::Empty);
    }
    if body.contains("{{") && body.contains("}}") {
        return Err(ParseError::Placeholder);
    }
    let mut found = Found::default();
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => read_json(&map, &mut found),
        _ => read_text(body, &mut found),
    }
    found.finish()
}

fn read_json(map: &serde_json::Map<String, Value>, found: &mut Found) {
    let mut text = None;
    for (key, value) in map {
        let key = key.to_lowercase().replace(['_', '-'], " ");
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        if matches!(key.as_str(), "message" | "text" | "mensaje" | "msg") {
            text = Some(value);
            continue;
        }
        if let Some(field) = field_of(&key) {
            found.set(field, &value);
        }
    }
    // A message inside the document fills what the keys did not.
    if let Some(text) = text {
        read_text(&text, found);
    }
}

/// The field a whole key names.
fn field_of(key: &str) -> Option<Field> {
    LABELS.iter().find(|(l, _)| *l == key).map(|(_, f)| *f)
}

fn read_text(text: &str, found: &mut Found) {
    let mut loose = Vec::new();
    for line in text.lines() {
        let line = strip_decoration(line);
        if line.is_empty() {
            continue;
        }
        match labelled(line) {
            Some((field, value)) => found.set(field, value),
            None => loose.push(line),
        }
    }
    // Lines without a label: an `EXCHANGE:SYMBOL` word, a `$` price, a bracketed indicator name,
    // a line that reads like a signal.
    for line in loose {
        if found.ticker.is_none()
            && let Some(t) = line.split_whitespace().find_map(exchange_symbol)
        {
            found.ticker = Some(t);
            continue;
        }
        if found.price.is_none()
            && let Some(p) = line
                .split_whitespace()
                .filter(|w| w.contains(['$', '€']))
                .find_map(parse_price)
        {
            found.price = Some(p);
            continue;
        }
        let lower = line.to_lowercase();
        if found.indicator.is_none() && line.contains('[') && line.contains(']') {
            found.indicator = Some(line.to_owned());
        } else if found.signal.is_none() && SIGNAL_WORDS.iter().any(|w| has_word(&lower, w)) {
            found.signal = Some(line.to_owned());
        }
    }
}

/// Whether `word` is in `text` on word boundaries.
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The line without leading emoji, bullets and markdown, and without trailing markup.
fn strip_decoration(line: &str) -> &str {
    line.trim_start_matches(|c: char| !c.is_alphanumeric() && c != '$' && c != '€' && c != '[')
        .trim_end_matches(|c: char| c.is_whitespace() || c == '*' || c == '_')
}

/// `label: value`, `label = value`, `label - value` or `label value` for a known label.
fn labelled(line: &str) -> Option<(Field, &str)> {
    let lower = line.to_lowercase();
    LABELS.iter().find_map(|(label, field)| {
        let rest = lower.strip_prefix(label)?;
        let first = rest.chars().next()?;
        if first.is_alphanumeric() {
            return None;
        }
        // Lower-casing keeps byte lengths for the ASCII and Spanish letters of the labels.
        let value = line.get(line.len().checked_sub(rest.len())?..)?;
        let value = value
            .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '_'))
            .trim_start_matches([':', '=', '-', '–', '→'])
            .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '_'));
        // `Signal BUY` reads as a label; `Short squeeze ahead` is not `short` labelled.
        let sep = first == ':' || first == '=' || rest.trim_start().starts_with([':', '=']);
        (sep || *field != Field::Signal || !value.contains(' ')).then_some((*field, value))
    })
}

/// `BINANCE:BTCUSDT` as a ticker, if `word` is one.
fn exchange_symbol(word: &str) -> Option<String> {
    let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '!');
    let (exchange, symbol) = word.split_once(':')?;
    let ok = |s: &str, extra: &[char]| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
    };
    (ok(exchange, &[])
        && ok(symbol, &['.', '!', '-', '/'])
        && exchange.chars().any(|c| c.is_ascii_alphabetic()))
    .then(|| word.to_uppercase())
}

/// A ticker value: its first word without decoration, upper case; `EXCHANGE:SYMBOL` or a
/// symbol of ASCII letters, digits and `_ . ! / -` (anything else is not a ticker).
fn clean_ticker(value: &str) -> Option<String> {
    let word = value
        .split_whitespace()
        .next()?
        .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '!');
    if word.contains(':') {
        return exchange_symbol(word);
    }
    let symbol_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '!' | '/' | '-');
    (!word.is_empty() && word.chars().all(symbol_char)).then(|| word.to_ascii_uppercase())
}

/// An exchange value: one word of ASCII letters, digits and `_`, upper case.
fn clean_exchange(value: &str) -> Option<String> {
    let word = value
        .split_whitespace()
        .next()?
        .trim_matches(|c: char| !c.is_ascii_alphanumeric());
    (!word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| word.to_ascii_uppercase())
}

/// `$67,890.50`, `67.890,50 €`, `1,234`, `0,00042`, `67890.5 USDT`.
fn parse_price(value: &str) -> Option<f64> {
    let start = value.find(|c: char| c.is_ascii_digit())?;
    let number: String = value[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
        .collect();
    let number = number.trim_end_matches(['.', ',']);
    let (commas, dots) = (number.matches(',').count(), number.matches('.').count());
    let normal = match (commas, dots) {
        (0, _) if dots > 1 => number.replace('.', ""),
        (0, _) => number.to_owned(),
        (_, 0) if commas > 1 => number.replace(',', ""),
        (_, 0) => {
            // One comma: thousands when exactly three digits follow and the rest is not zero
            // (`67,890`), else the decimal point (`0,00042`, `1,5`).
            let (int, frac) = number.split_once(',')?;
            if frac.len() == 3 && int != "0" {
                format!("{int}{frac}")
            } else {
                format!("{int}.{frac}")
            }
        }
        _ => {
            // Both: the last one is the decimal point.
            let last_comma = number.rfind(',')?;
            let last_dot = number.rfind('.')?;
            if last_comma > last_dot {
                number.replace('.', "").replace(',', ".")
            } else {
                number.replace(',', "")
            }
        }
    };
    normal.parse::<f64>().ok().filter(|p| p.is_finite())
}

/// TradingView's `{{interval}}` is minutes (`15`, `240`) or `D`, `W`, `M`: written as `15m`,
/// `4h`, `1D`. Anything else is kept as written.
fn timeframe(value: &str) -> String {
    let value = value.split_whitespace().next().unwrap_or(value);
    if let Ok(minutes) = value.parse::<u32>() {
        return if minutes >= 60 && minutes % 60 == 0 {
            format!("{}h", minutes / 60)
        } else {
            format!("{minutes}m")
        };
    }
    match value {
        "D" | "W" | "M" => format!("1{value}"),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests;
