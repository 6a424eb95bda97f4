//! Phone numbers to E.164, with `phonenumber`'s answers at a fraction of its cost for the shape an
//! import meets a million times: an optional `+` and ASCII digits.
//!
//! `phonenumber` matches every metadata pattern through `regex-cache`, which for each match locks
//! one global mutex and hashes the pattern's text (often hundreds of characters) to find the
//! compiled regex; it also runs its general-purpose parsers (RFC 3966, extensions, punctuation) on
//! every input. [`PhoneNormaliser`] compiles the patterns it needs once, from the crate's own
//! metadata, and follows the crate's steps for that one shape: its parse (international and
//! national prefixes, country code), its validation (the number's region, then a number type) and
//! its E.164 output. Anything else (letters, other scripts' digits, extensions) goes to the crate.
//! `the_fast_path_gives_the_crates_answers` compares both on every region's example numbers,
//! written several ways, and on random digit strings, from several home regions.
use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

use phonenumber::{
    NationalNumber, Validation, country,
    metadata::{DATABASE, Descriptor, Metadata},
};
use regex::{Regex, RegexBuilder};

/// A phone number in E.164 (`+34612345678`), as only the normaliser makes it: a phone cannot
/// be passed where an id or any other string is expected, nor an unchecked string as a phone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Normalises `raw` (separators, `00`, `+country`; `region` for a number without one).
    pub fn parse(raw: &str, region: country::Id) -> Result<Self, PhoneError> {
        match with_crate(region, &clean(raw)) {
            Outcome::E164(p) => Ok(p),
            Outcome::Unparsable => Err(PhoneError::Unparsable),
            Outcome::Invalid => Err(PhoneError::Invalid),
        }
    }

    /// The E.164 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The E.164 text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for PhoneNumber {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for PhoneNumber {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

/// Why a string is no phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneError {
    /// Not a phone number at all.
    Unparsable,
    /// A phone number, but no such number in its region.
    Invalid,
}

/// What became of a phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    E164(PhoneNumber),
    /// Not a phone number at all.
    Unparsable,
    /// A phone number, but not a valid one (no such number in its region).
    Invalid,
}

/// Drops the separators people type (spaces, dashes, dots, brackets, no-break spaces), and reads
/// a leading `00` as `+`.
pub fn clean(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
        .collect();
    match cleaned.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => cleaned,
    }
}

/// The crate itself: parse with `region` for numbers without `+`, validate, format E.164.
pub fn with_crate(region: country::Id, cleaned: &str) -> Outcome {
    match phonenumber::parse(Some(region), cleaned) {
        Err(_) => Outcome::Unparsable,
        Ok(number) if !phonenumber::is_valid(&number) => Outcome::Invalid,
        Ok(number) => Outcome::E164(PhoneNumber(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        )),
    }
}

/// The crate's limits on a national significant number (`consts` is private there).
const MIN_LENGTH_FOR_NSN: usize = 2;
const MAX_LENGTH_FOR_NSN: usize = 17;
const MAX_LENGTH_FOR_COUNTRY_CODE: usize = 3;

/// Country calling codes the metadata knows, by value.
static KNOWN_CODES: LazyLock<Vec<bool>> = LazyLock::new(|| {
    (0..1000u16)
        .map(|c| DATABASE.by_code(&c).is_some())
        .collect()
});

/// Compiles a metadata pattern the way the crate does, anchored at the start: the crate runs
/// every pattern as `regex.find(value)` and keeps only a match that starts at 0, which is the
/// match an anchored search finds (the leftmost match starts at 0 whenever one does), without
/// scanning the rest of the value for one and then searching backwards for its start. The
/// newline ends a `#` comment of the pattern (the crate compiles them with `x`).
fn compile(pattern: &str) -> Option<Regex> {
    RegexBuilder::new(&format!("^(?:{pattern}\n)"))
        .ignore_whitespace(true)
        .build()
        .ok()
}

/// The crate's test for every pattern: a match that starts at the beginning.
fn matches_at_start(regex: &Regex, value: &str) -> bool {
    regex.is_match(value)
}

/// A number descriptor (`Descriptor::is_match`).
struct Pattern {
    regex: Regex,
    lengths: Vec<u16>,
}

impl Pattern {
    fn new(descriptor: &Descriptor) -> Option<Self> {
        Some(Self {
            regex: compile(descriptor.national_number().as_str())?,
            lengths: descriptor.possible_length().to_vec(),
        })
    }

    fn is_match(&self, value: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(value.len() as u16)))
            && matches_at_start(&self.regex, value)
    }
}

/// What validation needs of one region.
struct Region {
    general: Pattern,
    /// Every type `validator::number_type` tries: a number is valid when one matches.
    types: Vec<Pattern>,
    leading_digits: Option<Regex>,
}

impl Region {
    fn new(meta: &Metadata) -> Option<Self> {
        let d = meta.descriptors();
        let types = [
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.fixed_line(),
            d.mobile(),
        ]
        .into_iter()
        .flatten()
        .map(Pattern::new)
        .collect::<Option<Vec<_>>>()?;
        Some(Self {
            general: Pattern::new(d.general())?,
            types,
            leading_digits: match meta.leading_digits() {
                Some(re) => Some(compile(re.as_str())?),
                None => None,
            },
        })
    }

    /// `validator::number_type(meta, value) != Type::Unknown`.
    fn has_type(&self, value: &str) -> bool {
        self.general.is_match(value) && self.types.iter().any(|t| t.is_match(value))
    }
}

/// The regions of one country calling code, in the crate's order.
enum Code {
    /// `validator::source_for` finds no region: no number with this code is valid.
    Unknown,
    One(Region),
    /// Shared codes (+1, +7, +44 …): the first region whose leading digits, or else whose number
    /// types, match.
    Many(Vec<Region>),
}

impl Code {
    fn new(code: u16) -> Option<Self> {
        let Some(regions) = DATABASE.region(&code) else {
            return Some(Self::Unknown);
        };
        if let [region] = regions[..] {
            let meta = if region == "001" {
                DATABASE.by_code(&code).and_then(|m| m.into_iter().next())
            } else if region.parse::<country::Id>().is_ok() {
                DATABASE.by_id(region)
            } else {
                None
            };
            return Some(match meta {
                Some(meta) => Self::One(Region::new(meta)?),
                None => Self::Unknown,
            });
        }
        regions
            .iter()
            .map(|r| DATABASE.by_id(*r).and_then(Region::new))
            .collect::<Option<Vec<_>>>()
            .map(Self::Many)
    }

    /// `validator::is_valid` for a national number under this code.
    fn is_valid(&self, national: &str) -> bool {
        match self {
            Self::Unknown => false,
            Self::One(region) => region.has_type(national),
            Self::Many(regions) => regions
                .iter()
                .find(|r| match &r.leading_digits {
                    Some(re) => matches_at_start(re, national),
                    None => r.has_type(national),
                })
                .is_some_and(|r| r.has_type(national)),
        }
    }
}

/// The home region's parsing rules: international and national prefixes, and its own code.
struct Home {
    code: u16,
    code_text: String,
    general: Pattern,
    local_lengths: Vec<u16>,
    idd: Option<Regex>,
    national_prefix: Option<String>,
    prefix_for_parsing: Option<Regex>,
    transform: Option<String>,
}

impl Home {
    fn new(region: country::Id) -> Option<Self> {
        let meta = DATABASE.by_id(region.as_ref())?;
        let general = meta.descriptors().general();
        let optional = |pattern: Option<&str>| match pattern {
            Some(pattern) => compile(pattern).map(Some),
            None => Some(None),
        };
        Some(Self {
            code: meta.country_code(),
            code_text: meta.country_code().to_string(),
            general: Pattern::new(general)?,
            local_lengths: general.possible_local_length().to_vec(),
            idd: optional(meta.international_prefix().map(|re| re.as_str()))?,
            national_prefix: meta.national_prefix().map(str::to_owned),
            prefix_for_parsing: optional(meta.national_prefix_for_parsing().map(|re| re.as_str()))?,
            transform: meta.national_prefix_transform_rule().map(str::to_owned),
        })
    }

    /// `validator::length(meta, number, Type::Unknown)`, as the crate computes it.
    fn length(&self, len: usize) -> Validation {
        let len = len as u16;
        let possible = &self.general.lengths;
        let (Some(&minimum), Some(&maximum)) = (possible.first(), possible.last()) else {
            return Validation::InvalidLength;
        };
        if self.local_lengths.contains(&len) {
            Validation::IsPossibleLocalOnly
        } else if len == minimum {
            Validation::IsPossible
        } else if len < minimum {
            Validation::TooShort
        } else if len > maximum {
            Validation::TooLong
        } else if possible.contains(&len) {
            Validation::IsPossible
        } else {
            Validation::InvalidLength
        }
    }

    /// `parser::helper::national_number`: strips a national prefix (or applies its transform).
    fn strip_national_prefix(&self, national: String) -> String {
        let Some(parsing) = &self.prefix_for_parsing else {
            return match &self.national_prefix {
                Some(prefix) if national.starts_with(prefix.as_str()) => {
                    national[prefix.len()..].to_owned()
                }
                _ => national,
            };
        };
        let Some(captures) = parsing.captures(&national) else {
            return national;
        };
        let whole = captures.get(0).expect("group 0");
        let viable = self.general.is_match(&national);
        let last_matched = captures.get(captures.len() - 1).is_some();
        match &self.transform {
            Some(transform) if last_matched => {
                let transformed = parsing.replace(&national, transform.as_str()).into_owned();
                if viable && !self.general.is_match(&transformed) {
                    national
                } else {
                    transformed
                }
            }
            _ => national[whole.end()..].to_owned(),
        }
    }
}

/// Compiled once per process, on first use: a region's rules take a millisecond or two to
/// compile, and +1 alone has 25 regions. `None` when a pattern would not compile: those numbers
/// then go to the crate.
static HOMES: LazyLock<Mutex<HashMap<String, Option<Arc<Home>>>>> = LazyLock::new(Mutex::default);
static CODES: LazyLock<Mutex<HashMap<u16, Option<Arc<Code>>>>> = LazyLock::new(Mutex::default);

/// Normalises an import's phones: the home region's rules, and those of each country code met,
/// looked up in the process's compiled rules once per import.
pub struct PhoneNormaliser {
    region: country::Id,
    home: Option<Arc<Home>>,
    codes: HashMap<u16, Option<Arc<Code>>>,
}

impl PhoneNormaliser {
    pub fn new(region: country::Id) -> Self {
        let home = HOMES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(region.as_ref().to_owned())
            .or_insert_with(|| Home::new(region).map(Arc::new))
            .clone();
        Self {
            region,
            home,
            codes: HashMap::new(),
        }
    }

    /// The same answer as [`with_crate`] for `cleaned` (see [`clean`]).
    pub fn normalise(&mut self, cleaned: &str) -> Outcome {
        self.fast(cleaned)
            .unwrap_or_else(|| with_crate(self.region, cleaned))
    }

    /// The crate's steps for `+digits` and `digits`; `None` for any other shape.
    fn fast(&mut self, cleaned: &str) -> Option<Outcome> {
        let Self { home, codes, .. } = self;
        let home = home.as_deref()?;
        let (plus, digits) = match cleaned.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, cleaned),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // `is_viable`: two digits alone, or three after a `+`.
        if digits.len() < if plus { 3 } else { 2 } {
            return Some(Outcome::Unparsable);
        }
        // `helper::international_prefix`: the home region's international prefix, when it is
        // followed by something other than 0, is dropped and makes the number international.
        let mut national = digits;
        let mut international = plus;
        if let Some(m) = home.idd.as_ref().and_then(|re| re.find(national))
            && !national[m.end()..].starts_with('0')
        {
            national = &national[m.end()..];
            international = true;
        }
        // `helper::country_code`.
        let code;
        let mut national = if international {
            if national.len() <= MIN_LENGTH_FOR_NSN || national.starts_with('0') {
                return Some(Outcome::Unparsable);
            }
            let found = (1..=MAX_LENGTH_FOR_COUNTRY_CODE.min(national.len()))
                .map(|len| (len, national[..len].parse::<u16>().unwrap_or(0)))
                .find(|&(_, c)| KNOWN_CODES.get(usize::from(c)) == Some(&true));
            let Some((len, c)) = found else {
                return Some(Outcome::Unparsable);
            };
            code = c;
            national[len..].to_owned()
        } else {
            code = home.code;
            if national.starts_with(home.code_text.as_str())
                && (!home.general.is_match(national) || !home.length(national.len()).is_possible())
            {
                national[home.code_text.len()..].to_owned()
            } else {
                national.to_owned()
            }
        };
        // `parser::parse_with`: the home region's national prefix, kept unless what is left is
        // too short.
        let mut potential = home.strip_national_prefix(national.clone());
        if let Some(prefix) = &home.national_prefix
            && potential.starts_with(prefix.as_str())
        {
            potential.drain(..prefix.len());
        }
        if home.length(potential.len()) != Validation::TooShort {
            national = potential;
        }
        if national.len() < MIN_LENGTH_FOR_NSN || national.len() > MAX_LENGTH_FOR_NSN {
            return Some(Outcome::Unparsable);
        }
        let Ok(number) = national.parse::<NationalNumber>() else {
            return Some(Outcome::Unparsable);
        };
        let national = number.to_string();
        let rules = codes.entry(code).or_insert_with(|| {
            CODES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(code)
                .or_insert_with(|| Code::new(code).map(Arc::new))
                .clone()
        });
        let valid = rules.as_ref()?.is_valid(&national);
        Some(if valid {
            Outcome::E164(PhoneNumber(format!("+{code}{national}")))
        } else {
            Outcome::Invalid
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Home regions to parse from: no national prefix (ES), `0` (GB, DE, IT with its leading
    /// zeros), shared codes (US, RU), transform rules (AR, MX, BR) and long international
    /// prefixes (AU).
    const HOMES: &[&str] = &["ES", "MX", "AR", "US", "GB", "DE", "IT", "BR", "RU", "AU"];

    fn check(
        normaliser: &mut PhoneNormaliser,
        home: country::Id,
        input: &str,
        fast_hits: &mut u32,
    ) {
        let cleaned = clean(input);
        let expected = with_crate(home, &cleaned);
        if let Some(got) = normaliser.fast(&cleaned) {
            *fast_hits += 1;
            assert_eq!(got, expected, "home {home:?}, input {input:?}");
        }
        assert_eq!(
            normaliser.normalise(&cleaned),
            expected,
            "home {home:?}, input {input:?}"
        );
    }

    #[test]
    fn the_fast_path_gives_the_crates_answers() {
        // Every region's example numbers, national and international, with and without the
        // national prefix, and with a digit changed or dropped.
        let mut inputs = Vec::new();
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let examples = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.voip(),
                d.uan(),
            ]
            .into_iter()
            .flatten()
            .filter_map(|d| d.example());
            for example in examples {
                let code = meta.country_code();
                inputs.push(example.to_owned());
                inputs.push(format!("+{code}{example}"));
                inputs.push(format!("00{code} {example}"));
                inputs.push(format!("{code}{example}"));
                if let Some(prefix) = meta.national_prefix() {
                    inputs.push(format!("{prefix}{example}"));
                    inputs.push(format!("+{code}{prefix}{example}"));
                }
                inputs.push(format!("+{code}{}", &example[..example.len() - 1]));
                inputs.push(format!("{example}7"));
                let mut changed = example.to_owned().into_bytes();
                changed[0] = if changed[0] == b'9' {
                    b'1'
                } else {
                    changed[0] + 1
                };
                inputs.push(String::from_utf8(changed).expect("digits"));
            }
        }
        // Random digit strings of every length, with and without `+`, with and without leading
        // zeros and ones (prefixes).
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..1500 {
            let len = 1 + (next() % 18) as usize;
            let digits: String = (0..len)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            inputs.push(match next() % 8 {
                0 => format!("+{digits}"),
                1 | 2 => format!("0{digits}"),
                3 => format!("1{digits}"),
                _ => digits,
            });
        }
        inputs.extend(
            [
                "",
                "+",
                "0",
                "00",
                "+0",
                "+00",
                "12",
                "+12",
                "+123",
                "not a phone",
                "+34 6x1",
            ]
            .map(str::to_owned),
        );
        // The crate keeps 100 compiled patterns; this test meets every region's, and recompiling
        // them was most of its time.
        DATABASE
            .cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_capacity(100_000);
        let mut fast_hits = 0;
        for home in HOMES {
            let home: country::Id = home.parse().expect("region");
            let mut normaliser = PhoneNormaliser::new(home);
            for input in &inputs {
                check(&mut normaliser, home, input, &mut fast_hits);
            }
        }
        // Nearly every input above takes the fast path.
        let total = (inputs.len() * HOMES.len()) as u32;
        assert!(
            fast_hits * 10 > total * 9,
            "{fast_hits} of {total} took the fast path"
        );
    }
}
