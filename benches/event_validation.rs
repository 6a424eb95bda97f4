//! Edge validation cost: parse a body and validate it (`events::validate_body`), the work
//! `POST /events` does before anything touches the buffer or the database.
//!
//! `cargo bench --bench event_validation` prints nanoseconds per event for a single event, a
//! batch of 100 and a batch of 100 with one bad event (the whole body is refused with a list).
use std::{hint::black_box, time::Instant};

use pregonero::config::Settings;
use serde_json::{Value, json};

fn event(i: usize, now: &str) -> Value {
    json!({"timestamp": now, "service": "payments", "message": format!("order {i} paid by card"),
           "metadata": {"level": "info", "region": "eu", "amount": i * 7}})
}

fn measure(name: &str, body: &[u8], events: usize, allow_single: bool) {
    let settings = Settings::default();
    let now = chrono::Utc::now();
    let rounds = (200_000 / events).max(2_000);
    // Warm up, then time.
    for _ in 0..rounds / 10 {
        let v: Value = serde_json::from_slice(body).expect("json");
        let _ = black_box(pregonero::events::validate_body(
            &v,
            &settings.events,
            now,
            allow_single,
        ));
    }
    let started = Instant::now();
    for _ in 0..rounds {
        let v: Value = serde_json::from_slice(black_box(body)).expect("json");
        let _ = black_box(pregonero::events::validate_body(
            &v,
            &settings.events,
            now,
            allow_single,
        ));
    }
    let per_body = started.elapsed().as_nanos() as f64 / rounds as f64;
    println!(
        "{name:<32} {:>9.0} ns/body {:>7.0} ns/event ({rounds} rounds, {} bytes)",
        per_body,
        per_body / events as f64,
        body.len()
    );
}

fn main() {
    let now = chrono::Utc::now().to_rfc3339();
    let single = serde_json::to_vec(&event(1, &now)).expect("json");
    let batch: Vec<Value> = (0..100).map(|i| event(i, &now)).collect();
    let batch_body = serde_json::to_vec(&batch).expect("json");
    let mut bad = batch.clone();
    bad[57]["timestamp"] = json!("yesterday");
    let bad_body = serde_json::to_vec(&bad).expect("json");
    println!("parse + validate (serde_json::from_slice + events::validate_body), release build");
    measure("single event", &single, 1, true);
    measure("batch of 100", &batch_body, 100, false);
    measure("batch of 100, one invalid", &bad_body, 100, false);
}
