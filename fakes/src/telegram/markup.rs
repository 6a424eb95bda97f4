//! Simplified checks of `parse_mode` markup, enough to catch unescaped text.
//!
//! Not a full parser: unbalanced `*`, `_`, `~` or unclosed HTML tags are accepted.

/// Supported `parse_mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ParseMode {
    MarkdownV2,
    Html,
    Markdown,
}

impl ParseMode {
    /// Parses a `parse_mode` value (case-insensitive, like Telegram).
    pub(super) fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "markdownv2" => Some(Self::MarkdownV2),
            "html" => Some(Self::Html),
            "markdown" => Some(Self::Markdown),
            _ => None,
        }
    }

    /// `Err(detail)` for the description `Bad Request: can't parse entities: {detail}`.
    pub(super) fn check(self, text: &str) -> Result<(), String> {
        match self {
            Self::MarkdownV2 => check_markdown_v2(text),
            Self::Html => check_html(text),
            Self::Markdown => Ok(()),
        }
    }
}

/// MarkdownV2 characters that must be escaped outside entities (`_*[]~` and `` ` `` start
/// entities and are not checked).
const RESERVED: &[char] = &['.', '!', '-', '=', '+', '#', '|', '{', '}', '(', ')', '>'];

fn check_markdown_v2(text: &str) -> Result<(), String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    let mut line_start = true;
    while i < chars.len() {
        let (offset, c) = chars[i];
        match c {
            // Any character may be escaped.
            '\\' => {
                i += 2;
                line_start = false;
                continue;
            }
            // Inline code or pre block: only '`' and '\' are special inside.
            '`' => {
                let fence = if text[offset..].starts_with("```") {
                    3
                } else {
                    1
                };
                let entity = if fence == 3 { "Pre" } else { "Code" };
                i = skip_until(&chars, i + fence, '`', fence).ok_or_else(|| {
                    format!("Can't find end of {entity} entity at byte offset {offset}")
                })?;
                line_start = false;
                continue;
            }
            // Inline link or mention: inside the URL only ')' and '\' are special.
            ']' if chars.get(i + 1).is_some_and(|&(_, next)| next == '(') => {
                i = skip_until(&chars, i + 2, ')', 1)
                    .ok_or_else(|| format!("Can't find end of a URL at byte offset {offset}"))?;
                line_start = false;
                continue;
            }
            // Block quotation at the start of a line.
            '>' if line_start => {}
            // Spoiler.
            '|' if chars.get(i + 1).is_some_and(|&(_, next)| next == '|') => {
                i += 2;
                line_start = false;
                continue;
            }
            c if RESERVED.contains(&c) => {
                return Err(format!(
                    "Character '{c}' is reserved and must be escaped with the preceding '\\'"
                ));
            }
            _ => {}
        }
        line_start = c == '\n';
        i += 1;
    }
    Ok(())
}

/// Index just after `count` consecutive `close` characters found from `start` (honouring `\`
/// escapes), or `None` if there are none.
fn skip_until(chars: &[(usize, char)], start: usize, close: char, count: usize) -> Option<usize> {
    let mut i = start;
    while i < chars.len() {
        let c = chars[i].1;
        if c == '\\' {
            i += 2;
            continue;
        }
        if c == close && (0..count).all(|k| chars.get(i + k).is_some_and(|&(_, x)| x == close)) {
            return Some(i + count);
        }
        i += 1;
    }
    None
}

/// Tags Telegram's HTML parse mode supports.
const HTML_TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "tg-spoiler",
    "tg-emoji",
    "span",
    "blockquote",
];

fn check_html(text: &str) -> Result<(), String> {
    for (offset, _) in text.match_indices('<') {
        let rest = &text[offset + 1..];
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if !HTML_TAGS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "Unsupported start tag \"{name}\" at byte offset {offset}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_v2() {
        let check = |t: &str| ParseMode::MarkdownV2.check(t);
        assert!(check("hello *world* _x_").is_ok());
        assert!(check("1\\.5 \\- ok\\!").is_ok());
        assert!(check("see [site](https://example.com/a.b-c)").is_ok());
        assert!(check("`a.b` and ```\nx = 1.0\n```").is_ok());
        assert!(check("> quote\n||spoiler||").is_ok());
        let err = check("Hello.").expect_err("unescaped dot");
        assert_eq!(
            err,
            "Character '.' is reserved and must be escaped with the preceding '\\'"
        );
        assert!(check("a - b").is_err());
        assert!(check("x > y").is_err());
    }

    #[test]
    fn html() {
        let check = |t: &str| ParseMode::Html.check(t);
        assert!(check("<b>bold</b> <a href=\"x\">l</a> <tg-spoiler>s</tg-spoiler>").is_ok());
        assert_eq!(
            check("ok <div>x</div>").expect_err("div"),
            "Unsupported start tag \"div\" at byte offset 3"
        );
        assert!(check("1 < 2").is_err());
    }

    #[test]
    fn parse_mode_names() {
        assert_eq!(ParseMode::parse("MarkdownV2"), Some(ParseMode::MarkdownV2));
        assert_eq!(ParseMode::parse("html"), Some(ParseMode::Html));
        assert_eq!(ParseMode::parse("Markdown"), Some(ParseMode::Markdown));
        assert_eq!(ParseMode::parse("rst"), None);
    }
}
