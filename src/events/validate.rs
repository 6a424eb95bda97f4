//! Edge validation of events: every problem is reported with its field path, in one answer.
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use crate::{config::EventsSettings, error::FieldError};

/// A valid event, ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// When it happened (UTC).
    pub timestamp: DateTime<Utc>,
    /// Emitting service.
    pub service: String,
    /// Text.
    pub message: String,
    /// JSON object, serialized.
    pub metadata: Option<String>,
}

const FIELDS: [&str; 4] = ["timestamp", "service", "message", "metadata"];
const MAX_SERVICE: usize = 100;

fn err(field: String, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        code,
        message: message.into(),
    }
}

/// Validates a body that is one event object or an array of them (`allow_single` false: array
/// only). Returns the events and whether the body was an array.
pub fn validate_body(
    body: &Value,
    settings: &EventsSettings,
    now: DateTime<Utc>,
    allow_single: bool,
) -> Result<(Vec<NewEvent>, bool), Vec<FieldError>> {
    match body {
        Value::Object(obj) if allow_single => {
            validate_event(obj, "", settings, now).map(|e| (vec![e], false))
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(vec![err("".into(), "required", "send at least one event")]);
            }
            if items.len() > settings.max_request_events {
                return Err(vec![err(
                    "".into(),
                    "too-large",
                    format!(
                        "{} events in one request; at most {}",
                        items.len(),
                        settings.max_request_events
                    ),
                )]);
            }
            let mut events = Vec::with_capacity(items.len());
            let mut errors = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let prefix = format!("[{i}].");
                match item {
                    Value::Object(obj) => match validate_event(obj, &prefix, settings, now) {
                        Ok(e) => events.push(e),
                        Err(mut e) => errors.append(&mut e),
                    },
                    _ => errors.push(err(format!("[{i}]"), "invalid-type", "must be an object")),
                }
            }
            if errors.is_empty() {
                Ok((events, true))
            } else {
                Err(errors)
            }
        }
        _ => Err(vec![err(
            "".into(),
            "invalid-type",
            if allow_single {
                "the body must be an event object or an array of events"
            } else {
                "the body must be an array of events"
            },
        )]),
    }
}

fn validate_event(
    obj: &Map<String, Value>,
    prefix: &str,
    settings: &EventsSettings,
    now: DateTime<Utc>,
) -> Result<NewEvent, Vec<FieldError>> {
    let mut errors = Vec::new();
    let f = |name: &str| format!("{prefix}{name}");
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            errors.push(err(f(key), "unknown-field", "not an event field"));
        }
    }
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => {
            errors.push(err(
                f("timestamp"),
                "required",
                "an RFC 3339 time is required",
            ));
            None
        }
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => {
                // Microseconds, like PostgreSQL: the keyset cursor compares stored values for
                // equality, and SQLite keeps whatever precision it is given.
                let t = chrono::SubsecRound::trunc_subsecs(t.with_timezone(&Utc), 6);
                let skew =
                    Duration::seconds(i64::try_from(settings.max_future_skew_secs).unwrap_or(300));
                let oldest = Duration::days(i64::from(settings.retention_days));
                if t > now + skew {
                    errors.push(err(
                        f("timestamp"),
                        "in-future",
                        format!("more than {}s in the future", settings.max_future_skew_secs),
                    ));
                } else if t < now - oldest {
                    errors.push(err(
                        f("timestamp"),
                        "too-old",
                        format!("older than the {}-day retention", settings.retention_days),
                    ));
                }
                Some(t)
            }
            Err(_) => {
                errors.push(err(
                    f("timestamp"),
                    "invalid-format",
                    "must be RFC 3339, e.g. 2026-11-23T10:00:00Z",
                ));
                None
            }
        },
        Some(_) => {
            errors.push(err(f("timestamp"), "invalid-type", "must be a string"));
            None
        }
    };
    let service = match obj.get("service") {
        None | Some(Value::Null) => {
            errors.push(err(
                f("service"),
                "required",
                "the emitting service is required",
            ));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push(err(f("service"), "required", "must not be empty"));
            None
        }
        Some(Value::String(s)) if s.len() > MAX_SERVICE => {
            errors.push(err(
                f("service"),
                "too-long",
                format!("at most {MAX_SERVICE} bytes"),
            ));
            None
        }
        Some(Value::String(s))
            if !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) =>
        {
            errors.push(err(
                f("service"),
                "invalid-characters",
                "letters, digits, `.`, `_`, `:` and `-` only",
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(err(f("service"), "invalid-type", "must be a string"));
            None
        }
    };
    let message = match obj.get("message") {
        None | Some(Value::Null) => {
            errors.push(err(f("message"), "required", "a message is required"));
            None
        }
        Some(Value::String(s)) if s.is_empty() => {
            errors.push(err(f("message"), "required", "must not be empty"));
            None
        }
        Some(Value::String(s)) if s.len() > settings.max_message_bytes => {
            errors.push(err(
                f("message"),
                "too-long",
                format!("at most {} bytes", settings.max_message_bytes),
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(err(f("message"), "invalid-type", "must be a string"));
            None
        }
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > settings.max_metadata_bytes {
                errors.push(err(
                    f("metadata"),
                    "too-large",
                    format!("at most {} bytes as JSON", settings.max_metadata_bytes),
                ));
            }
            Some(text)
        }
        Some(_) => {
            errors.push(err(f("metadata"), "invalid-type", "must be an object"));
            None
        }
    };
    match (timestamp, service, message) {
        (Some(timestamp), Some(service), Some(message)) if errors.is_empty() => Ok(NewEvent {
            timestamp,
            service,
            message,
            metadata,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> EventsSettings {
        crate::config::Settings::default().events
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let now = Utc::now();
        let body = json!([
            {"timestamp": now.to_rfc3339(), "service": "api", "message": "ok"},
            {"timestamp": "yesterday", "service": "bad service!", "extra": 1, "metadata": [1]},
            "not an object"
        ]);
        let errors = validate_body(&body, &settings(), now, true).expect_err("invalid");
        let got: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            vec![
                ("[1].extra", "unknown-field"),
                ("[1].timestamp", "invalid-format"),
                ("[1].service", "invalid-characters"),
                ("[1].message", "required"),
                ("[1].metadata", "invalid-type"),
                ("[2]", "invalid-type"),
            ]
        );
    }

    #[test]
    fn skew_and_age_are_checked() {
        let now = Utc::now();
        let future = json!({"timestamp": (now + Duration::hours(1)).to_rfc3339(), "service": "a", "message": "m"});
        let old = json!({"timestamp": (now - Duration::days(31)).to_rfc3339(), "service": "a", "message": "m"});
        assert_eq!(
            validate_body(&future, &settings(), now, true).expect_err("future")[0].code,
            "in-future"
        );
        assert_eq!(
            validate_body(&old, &settings(), now, true).expect_err("old")[0].code,
            "too-old"
        );
        let ok = json!({"timestamp": now.to_rfc3339(), "service": "a", "message": "m", "metadata": {"k": 1}});
        let (events, array) = validate_body(&ok, &settings(), now, true).expect("valid");
        assert!(!array);
        assert_eq!(events[0].metadata.as_deref(), Some(r#"{"k":1}"#));
    }
}
