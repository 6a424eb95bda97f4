//! Validation of a `/messages` body into what the fake records.

use serde_json::Value;

use super::error::{self, ApiError};
use super::state::State;

const MAX_TEXT_CHARS: usize = 4096;
const MAX_CAPTION_CHARS: usize = 1024;

/// The digits of a phone number (`+34 600-111-222` → `34600111222`).
pub(super) fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// `to` as the API takes it: 8–15 digits with an optional leading `+`. Returns the wa_id.
pub(super) fn parse_recipient(to: &str) -> Option<String> {
    let bare = to.strip_prefix('+').unwrap_or(to);
    let ok = (8..=15).contains(&bare.len()) && bare.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| bare.to_owned())
}

/// A valid outgoing message.
#[derive(Clone, Debug)]
pub(super) struct Outgoing {
    /// `to` as given.
    pub(super) to: String,
    pub(super) wa_id: String,
    /// The `type`.
    pub(super) kind: &'static str,
    /// Text body or caption.
    pub(super) body: Option<String>,
    pub(super) template: Option<String>,
    pub(super) template_params: Vec<String>,
    pub(super) media_id: Option<String>,
    pub(super) media_link: Option<String>,
    pub(super) filename: Option<String>,
}

impl Outgoing {
    pub(super) fn is_template(&self) -> bool {
        self.kind == "template"
    }
}

/// A string field of `obj`, if present and a string.
fn string<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// Parses and validates a `/messages` body for number `id`.
pub(super) fn validate(state: &State, id: &str, body: &[u8]) -> Result<Outgoing, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid("Request body must be a JSON object"));
    }
    match string(&value, "messaging_product") {
        Some("whatsapp") => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Param messaging_product must be one of {{WHATSAPP}} - got \"{other}\"."
            )));
        }
        None => {
            return Err(ApiError::invalid(
                "The parameter messaging_product is required.",
            ));
        }
    }
    if let Some(kind) = value.get("recipient_type")
        && kind.as_str() != Some("individual")
    {
        return Err(ApiError::invalid(
            "Param recipient_type must be one of {INDIVIDUAL}.",
        ));
    }
    let to =
        string(&value, "to").ok_or_else(|| ApiError::invalid("The parameter to is required."))?;
    let wa_id = parse_recipient(to).ok_or_else(|| {
        ApiError::invalid(format!(
            "Param to must be a phone number of 8 to 15 digits with an optional leading + - got \"{to}\"."
        ))
    })?;
    let kind = match string(&value, "type").unwrap_or("text") {
        "text" => "text",
        "template" => "template",
        "image" => "image",
        "document" => "document",
        "video" => "video",
        "audio" => "audio",
        other => {
            return Err(ApiError::invalid(format!(
                "Param type must be one of {{AUDIO, DOCUMENT, IMAGE, TEMPLATE, TEXT, VIDEO}} - got \"{other}\"."
            )));
        }
    };
    let mut out = Outgoing {
        to: to.to_owned(),
        wa_id,
        kind,
        body: None,
        template: None,
        template_params: Vec::new(),
        media_id: None,
        media_link: None,
        filename: None,
    };
    let object = value
        .get(kind)
        .filter(|v| v.is_object())
        .ok_or_else(|| ApiError::invalid(format!("The parameter {kind} is required.")))?;
    match kind {
        "text" => text(object, &mut out)?,
        "template" => template(state, object, &mut out)?,
        _ => media(state, id, object, &mut out)?,
    }
    Ok(out)
}

fn text(object: &Value, out: &mut Outgoing) -> Result<(), ApiError> {
    let body = string(object, "body")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError::invalid("The parameter text['body'] is required."))?;
    if body.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::invalid(format!(
            "Param text['body'] must be at most {MAX_TEXT_CHARS} characters long."
        )));
    }
    if object.get("preview_url").is_some_and(|p| !p.is_boolean()) {
        return Err(ApiError::invalid(
            "Param text['preview_url'] must be a boolean.",
        ));
    }
    out.body = Some(body.to_owned());
    Ok(())
}

fn template(state: &State, object: &Value, out: &mut Outgoing) -> Result<(), ApiError> {
    let name = string(object, "name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("The parameter template['name'] is required."))?;
    let language = object
        .get("language")
        .and_then(|l| string(l, "code"))
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ApiError::invalid("The parameter template['language']['code'] is required.")
        })?;
    let expected = state
        .templates
        .get(&(name.to_owned(), language.to_owned()))
        .copied()
        .ok_or_else(|| {
            ApiError::new(
                error::TEMPLATE_MISSING,
                format!("template name ({name}) does not exist in {language}"),
            )
        })?;
    let components = match object.get("components") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(components)) => components.as_slice(),
        Some(_) => {
            return Err(ApiError::invalid(
                "Param template['components'] must be an array.",
            ));
        }
    };
    let mut params = Vec::new();
    for component in components {
        let is_body = string(component, "type").is_some_and(|t| t.eq_ignore_ascii_case("body"));
        if !is_body {
            continue;
        }
        let Some(parameters) = component.get("parameters").and_then(Value::as_array) else {
            continue;
        };
        params.extend(parameters.iter().map(parameter_text));
    }
    if params.len() != expected {
        return Err(ApiError::new(
            error::TEMPLATE_PARAMS,
            format!(
                "body: number of localizable_params ({}) does not match the expected number of params ({expected})",
                params.len()
            ),
        ));
    }
    out.template = Some(name.to_owned());
    out.template_params = params;
    Ok(())
}

/// The text of a body parameter (`text`, or the fallback value of a currency / date_time).
fn parameter_text(parameter: &Value) -> String {
    string(parameter, "text")
        .or_else(|| {
            parameter
                .get("currency")
                .and_then(|c| string(c, "fallback_value"))
        })
        .or_else(|| {
            parameter
                .get("date_time")
                .and_then(|d| string(d, "fallback_value"))
        })
        .unwrap_or_default()
        .to_owned()
}

/// Image, document, video or audio: exactly one of `id` (issued by this fake for this number)
/// and `link` (http/https), an optional caption, an optional document filename.
fn media(state: &State, id: &str, object: &Value, out: &mut Outgoing) -> Result<(), ApiError> {
    let kind = out.kind;
    match (string(object, "id"), string(object, "link")) {
        (Some(media_id), None) => {
            let known = state
                .media
                .get(media_id)
                .is_some_and(|m| m.phone_number_id == id);
            if !known {
                return Err(ApiError::invalid(format!(
                    "Param {kind}['id'] is not a valid whatsapp business account media attachment ID"
                )));
            }
            out.media_id = Some(media_id.to_owned());
        }
        (None, Some(link)) => {
            let is_url = link.starts_with("https://") || link.starts_with("http://");
            if !is_url {
                return Err(ApiError::invalid(format!(
                    "Param {kind}['link'] must be an http or https URL."
                )));
            }
            out.media_link = Some(link.to_owned());
        }
        _ => {
            return Err(ApiError::invalid(format!(
                "Please specify exactly one of {kind}['id'] and {kind}['link']."
            )));
        }
    }
    if let Some(caption) = string(object, "caption") {
        if caption.chars().count() > MAX_CAPTION_CHARS {
            return Err(ApiError::invalid(format!(
                "Param {kind}['caption'] must be at most {MAX_CAPTION_CHARS} characters long."
            )));
        }
        out.body = Some(caption.to_owned());
    }
    if kind == "document" {
        out.filename = string(object, "filename").map(str::to_owned);
    }
    Ok(())
}
