//! Entry points of the fuzz targets (`fuzz/`, `scripts/fuzz`): each hands outside input to the
//! parser the server runs on it, the same code path, and checks what must hold of the result.
//! None may panic, whatever the bytes. Not an API: hidden from the docs and free to change.
use std::{collections::BTreeMap, io::Cursor};

use chrono::{TimeZone, Utc};

/// A contacts CSV as an upload: the header, the separator, the encoding (UTF-8 or the Windows-1252
/// fallback), every row to its contact or its refusal.
pub fn contacts_csv(data: &[u8]) {
    let Ok(rows) = crate::contacts::csv_reader::ContactsCsv::new(
        Cursor::new(data),
        phonenumber::country::Id::ES,
    ) else {
        return;
    };
    let mut seen = 0usize;
    for row in rows {
        seen += 1;
        if let (_, Ok(contact)) = row {
            assert!(contact.phone.as_str().starts_with('+'), "{contact:?}");
        }
        if seen > 100_000 {
            break;
        }
    }
}

/// A template body as a user writes it, rendered for a contact with the variables the fuzzer
/// gives (the body's first line is `name=value;…`).
pub fn template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (vars, body) = text.split_once('\n').unwrap_or(("", &text));
    let Ok(compiled) = crate::templates::Compiled::new(body) else {
        return;
    };
    let vars: BTreeMap<String, String> = vars
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // What `check` reports before a campaign: the absent variables that stop the render. When
    // it names any, the render fails (a variable used only under `is defined` is not one).
    let blocking = compiled.blocking(&vars);
    let rendered = compiled.render(&vars);
    assert!(
        blocking.is_empty() || rendered.is_err(),
        "rendered although {blocking:?} block it"
    );
    let _ = compiled.missing(&vars);
}

/// A Telegram update as `getUpdates` or the webhook delivers it, and the bot command in its
/// text.
pub fn telegram_update(data: &[u8]) {
    let Ok(update) = serde_json::from_slice::<crate::channels::telegram::Update>(data) else {
        return;
    };
    if let Some(text) = update.message.as_ref().and_then(|m| m.text.as_deref())
        && let Some((command, arg)) = crate::integrations::bot_command(text, Some("pregonero_bot"))
    {
        assert!(!command.contains(char::is_whitespace));
        assert!(arg.is_none_or(|a| !a.is_empty() && !a.contains(char::is_whitespace)));
    }
}

/// A WhatsApp Cloud API callback: its signature header checked against the body (the first
/// line of the input is the header, the rest the body), then the body read as Meta sends it.
pub fn whatsapp_webhook(data: &[u8]) {
    const SECRET: &[u8] = b"app secret";
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (header, body) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let header = std::str::from_utf8(header).ok();
    let ok = crate::channels::whatsapp::webhook::signature_ok(header, SECRET, body);
    // Meta's form: `sha256=` (lower case, as sent) and the HMAC in hex (either case).
    let genuine = hex::encode(crate::crypto::hmac_sha256(SECRET, body));
    assert_eq!(
        ok,
        header.is_some_and(|h| h
            .strip_prefix("sha256=")
            .is_some_and(|sig| sig.eq_ignore_ascii_case(&genuine))),
        "only the body's own signature passes"
    );
    let _ = crate::channels::whatsapp::webhook::parse_callback(body);
}

/// A body of `POST /events` or `/events/batch`: one event or an array, validated.
pub fn event_batch(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let settings = crate::config::Settings::default().events;
    let now = Utc
        .with_ymd_and_hms(2026, 12, 6, 12, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    if let Ok((events, _)) = crate::events::validate::validate_body(&body, &settings, now, true) {
        assert!(!events.is_empty() && events.len() <= settings.max_request_events);
        for e in &events {
            assert!(!e.service.is_empty());
            assert!(e.message.len() <= settings.max_message_bytes);
        }
    }
}

/// A TradingView alert's text (JSON or the loose `BTCUSDT buy 42000 …` forms).
pub fn trading_alert(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(s) = crate::signals::parse::parse(&text) {
        assert!(!s.ticker.is_empty() && !s.symbol.is_empty());
        assert!(!s.ticker.contains(char::is_whitespace));
        assert_eq!(s.ticker, s.ticker.to_uppercase());
        if let Some(exchange) = &s.exchange {
            assert_eq!(s.ticker, format!("{exchange}:{}", s.symbol));
        }
        assert!(s.price.is_none_or(f64::is_finite));
    }
}

/// A settings file (TOML), over the defaults and validated.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::config::Settings::from_toml(text);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// A fuzz target's entry.
    type Entry = fn(&[u8]);

    /// Every target's entry, by the name of its folders under `fuzz/`.
    const TARGETS: [(&str, Entry); 7] = [
        ("contacts_csv", super::contacts_csv),
        ("template", super::template),
        ("telegram_update", super::telegram_update),
        ("whatsapp_webhook", super::whatsapp_webhook),
        ("event_batch", super::event_batch),
        ("config", super::config),
        ("parse_alert", super::trading_alert),
    ];

    /// The fuzzers' seeds and every crash they ever found (`fuzz/regressions/<target>/`) run
    /// through their entries on each test run, so a fixed crash stays fixed.
    #[test]
    fn seeds_and_regressions_never_panic() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut ran = 0;
        for (target, entry) in TARGETS {
            let mut seeds = 0;
            for dir in ["seeds", "regressions"] {
                let Ok(files) = std::fs::read_dir(root.join(dir).join(target)) else {
                    continue;
                };
                for file in files {
                    let path = file.expect("entry").path();
                    let data = std::fs::read(&path).expect("read");
                    entry(&data);
                    seeds += 1;
                }
            }
            assert!(seeds > 0, "no seeds for fuzz target {target}");
            ran += seeds;
        }
        assert!(ran >= TARGETS.len());
    }

    /// The checks inside the entries can fail: a body signed with another secret is refused,
    /// its own signature passes.
    #[test]
    fn the_webhook_entry_accepts_only_the_bodys_own_signature() {
        let body = br#"{"entry":[]}"#;
        let good = format!(
            "sha256={}",
            hex::encode(crate::crypto::hmac_sha256(b"app secret", body))
        );
        assert!(crate::channels::whatsapp::webhook::signature_ok(
            Some(&good),
            b"app secret",
            body
        ));
        assert!(!crate::channels::whatsapp::webhook::signature_ok(
            Some(&good),
            b"other",
            body
        ));
        assert!(!crate::channels::whatsapp::webhook::signature_ok(
            None,
            b"app secret",
            body
        ));
        super::whatsapp_webhook(&[good.as_bytes(), b"\n", body].concat());
    }
}
