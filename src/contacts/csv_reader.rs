//! Reads a contacts CSV one row at a time, whatever its shape: UTF-8 with or without BOM or
//! Windows-1252 (what Excel saves as "CSV" on Spanish Windows), comma, semicolon or tab separated, and headers in Spanish or English (`telefono`,
//! `nombre`, `sustantivo`, `grupo`, …). Other columns become free attributes. Rows come out
//! normalised (E.164 phones) or as an error with a stable code; nothing is held but the current
//! row and one 8-byte hash per phone seen (to report duplicates within the file).
use std::{
    collections::{BTreeMap, HashSet},
    hash::{Hash, Hasher},
    io::{BufRead, BufReader, Read},
};

use phonenumber::country;

use crate::domain::phone::{self, Outcome, PhoneNormaliser, PhoneNumber};

/// Longest accepted value of one field, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

/// A contact as read from one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    /// E.164.
    pub phone: PhoneNumber,
    pub name: Option<String>,
    pub noun: Option<String>,
    pub group: Option<String>,
    pub telegram_chat_id: Option<String>,
    /// Other columns, by normalised header.
    pub attributes: BTreeMap<String, String>,
}

/// A row's fields other than the phone, while it is read.
#[derive(Default)]
struct Fields {
    name: Option<String>,
    noun: Option<String>,
    group: Option<String>,
    telegram_chat_id: Option<String>,
    attributes: BTreeMap<String, String>,
}

/// A refused row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The phone as written, if any.
    pub phone: Option<String>,
    /// `phone-missing`, `phone-invalid`, `duplicate-in-file`, `field-too-long`, `malformed-row`.
    pub code: &'static str,
    pub message: String,
}

/// One data row: its row number as a spreadsheet shows it (the header is row 1) and what became
/// of it.
pub type Row = (u64, Result<ContactRow, RowError>);

/// Why a file cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file is empty")]
    Empty,
    #[error(
        "no phone column; name one `phone`, `telefono`, `movil` or `whatsapp` (headers found: {0})"
    )]
    NoPhoneColumn(String),
    #[error("could not read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("could not read the header: {0}")]
    Csv(#[from] csv::Error),
}

#[derive(Debug, Clone, PartialEq)]
enum Column {
    Phone,
    Name,
    Noun,
    Group,
    Telegram,
    Attribute(String),
    /// A column the file's owner chose not to import: its header is empty or starts with `_`
    /// (the dashboard's column mapping names a skipped column `_skip_<n>`).
    Ignored,
}

/// Header → column, after lower-casing, dropping accents and turning spaces and dashes into `_`.
fn column_for(header: &str) -> Column {
    let key = normalise_header(header);
    match key.as_str() {
        "phone" | "phone_number" | "telefono" | "tel" | "movil" | "celular" | "mobile"
        | "numero" | "whatsapp" | "msisdn" => Column::Phone,
        "name" | "nombre" | "full_name" | "nombre_completo" => Column::Name,
        "noun" | "sustantivo" | "tratamiento" | "salutation" => Column::Noun,
        "group" | "grupo" => Column::Group,
        "telegram" | "telegram_chat_id" | "chat_id" => Column::Telegram,
        "" => Column::Ignored,
        _ if key.starts_with('_') => Column::Ignored,
        _ => Column::Attribute(key),
    }
}

/// `Teléfono Móvil` → `telefono_movil`.
pub fn normalise_header(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    for c in header.trim().chars().flat_map(char::to_lowercase) {
        let c = match c {
            'á' | 'à' | 'ä' | 'â' => 'a',
            'é' | 'è' | 'ë' | 'ê' => 'e',
            'í' | 'ì' | 'ï' | 'î' => 'i',
            'ó' | 'ò' | 'ö' | 'ô' => 'o',
            'ú' | 'ù' | 'ü' | 'û' => 'u',
            'ñ' => 'n',
            ' ' | '-' | '.' => '_',
            c => c,
        };
        out.push(c);
    }
    out
}

/// UTF-8 when it is, else Windows-1252: spreadsheets on Windows still save CSV that way. Read
/// as ISO-8859-1 (each byte its own code point), Excel's `€ ’ “ ” –` (0x80–0x9F) became C1
/// control characters; Windows-1252 is also what the WHATWG standard decodes "latin1" as.
fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.trim().to_owned(),
        Err(_) => encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .trim()
            .to_owned(),
    }
}

/// Normalises a phone to E.164: `+` or `00` means international, else `region` applies.
pub fn normalise_phone(raw: &str, region: country::Id) -> Result<PhoneNumber, RowError> {
    phone_result(raw, region, phone::with_crate(region, &phone::clean(raw)))
}

/// A phone's outcome as a row's result.
fn phone_result(raw: &str, region: country::Id, outcome: Outcome) -> Result<PhoneNumber, RowError> {
    let invalid = |why: String| RowError {
        phone: Some(raw.to_owned()),
        code: "phone-invalid",
        message: format!("`{raw}` is not a valid phone number{why}"),
    };
    match outcome {
        Outcome::E164(phone) => Ok(phone),
        Outcome::Unparsable => Err(invalid(String::new())),
        Outcome::Invalid => Err(invalid(format!(
            " (read as {region:?} when it has no +country)"
        ))),
    }
}

pub use crate::domain::region;

/// Picks the separator the header line uses most: `,`, `;` or tab.
fn sniff_delimiter(first_line: &[u8]) -> u8 {
    let count = |d: u8| first_line.iter().filter(|&&b| b == d).count();
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|&d| (count(d), d == b','))
        .unwrap_or(b',')
}

/// An E.164 phone as a number: `+` and at most 15 digits, the first never 0, so two phones have
/// the same key only when they are the same phone. Anything else (never met: the normaliser only
/// gives E.164) is hashed into the upper half, where no phone's key is. (The key was a 64-bit
/// hash of the phone: two phones could have been taken for one.)
fn phone_key(e164: &str) -> u64 {
    let digits = e164.strip_prefix('+').unwrap_or(e164);
    if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits.bytes().fold(0, |n, b| n * 10 + u64::from(b - b'0'));
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    e164.hash(&mut hasher);
    hasher.finish() | 1 << 63
}

/// Iterates the data rows of a contacts CSV.
pub struct ContactsCsv<R: Read> {
    reader: csv::Reader<BufReader<R>>,
    columns: Vec<Column>,
    region: country::Id,
    phones: PhoneNormaliser,
    record: csv::ByteRecord,
    /// Phones seen, by [`phone_key`]. foldhash, seeded per process, hashes a key in a few
    /// instructions: SipHash, twice per row, was a tenth of the reading thread's time.
    seen: HashSet<u64, foldhash::fast::RandomState>,
    /// Data records read so far.
    records: u64,
    done: bool,
}

impl<R: Read> ContactsCsv<R> {
    /// Reads the header: strips a BOM, finds the separator, maps the columns.
    pub fn new(input: R, region: country::Id) -> Result<Self, FileError> {
        let mut buffered = BufReader::with_capacity(256 * 1024, input);
        let head = buffered.fill_buf()?;
        if head.is_empty() {
            return Err(FileError::Empty);
        }
        let bom = head.starts_with(&[0xEF, 0xBB, 0xBF]);
        let start = if bom { 3 } else { 0 };
        let line_end = head[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len(), |p| start + p);
        let delimiter = sniff_delimiter(&head[start..line_end]);
        if bom {
            buffered.consume(3);
        }
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(true)
            .from_reader(buffered);
        let headers: Vec<String> = reader.byte_headers()?.iter().map(decode).collect();
        let columns: Vec<Column> = headers.iter().map(|h| column_for(h)).collect();
        if !columns.contains(&Column::Phone) {
            return Err(FileError::NoPhoneColumn(headers.join(", ")));
        }
        Ok(Self {
            reader,
            columns,
            region,
            phones: PhoneNormaliser::new(region),
            record: csv::ByteRecord::new(),
            seen: HashSet::default(),
            records: 0,
            done: false,
        })
    }

    fn row(&mut self) -> Result<ContactRow, RowError> {
        let mut phone = None;
        let mut row = Fields::default();
        let mut too_long = None;
        for (column, field) in self.columns.iter().zip(self.record.iter()) {
            let value = decode(field);
            if value.is_empty() || *column == Column::Ignored {
                continue;
            }
            if value.len() > MAX_FIELD_CHARS && value.chars().count() > MAX_FIELD_CHARS {
                too_long = Some(column.clone());
                continue;
            }
            match column {
                Column::Phone => phone = Some(value),
                Column::Name => row.name = Some(value),
                Column::Noun => row.noun = Some(value),
                Column::Group => row.group = Some(value),
                Column::Telegram => row.telegram_chat_id = Some(value),
                Column::Attribute(key) => {
                    row.attributes.insert(key.clone(), value);
                }
                Column::Ignored => {}
            }
        }
        if let Some(column) = too_long {
            return Err(RowError {
                phone,
                code: "field-too-long",
                message: format!(
                    "a value of {column:?} is longer than {MAX_FIELD_CHARS} characters"
                ),
            });
        }
        let Some(raw) = phone else {
            return Err(RowError {
                phone: None,
                code: "phone-missing",
                message: "the row has no phone".into(),
            });
        };
        let outcome = self.phones.normalise(&phone::clean(&raw));
        let phone = phone_result(&raw, self.region, outcome)?;
        if !self.seen.insert(phone_key(phone.as_str())) {
            return Err(RowError {
                phone: Some(raw),
                code: "duplicate-in-file",
                message: format!(
                    "{phone} already appears earlier in this file; the first row wins"
                ),
            });
        }
        Ok(ContactRow {
            phone,
            name: row.name,
            noun: row.noun,
            group: row.group,
            telegram_chat_id: row.telegram_chat_id,
            attributes: row.attributes,
        })
    }
}

impl<R: Read> Iterator for ContactsCsv<R> {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        if self.done {
            return None;
        }
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                self.records += 1;
                Some((self.records + 1, self.row()))
            }
            Err(e) => {
                // Byte records only fail on I/O: report it on the row and stop.
                self.done = true;
                Some((
                    self.records + 2,
                    Err(RowError {
                        phone: None,
                        code: "malformed-row",
                        message: format!("unreadable CSV: {e}"),
                    }),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Vec<Row> {
        ContactsCsv::new(bytes, country::Id::ES)
            .expect("header")
            .collect()
    }

    #[test]
    fn seed_headers_semicolons_bom_and_latin1() {
        let mut file = b"\xEF\xBB\xBFnombre;sustantivo;grupo;Tel\xC3\xA9fono;Ciudad\n".to_vec();
        file.extend_from_slice(b"Ana;Sra.;VIP;612 345 678;Madrid\n");
        // Latin-1 row: "Jos\xe9" is "José".
        file.extend_from_slice(b"Jos\xe9;Sr.;General;+34 699 111 222;Sevilla\n");
        let rows = read(&file);
        assert_eq!(rows.len(), 2);
        let (line, ana) = &rows[0];
        assert_eq!(*line, 2);
        let ana = ana.as_ref().expect("ana");
        assert_eq!(ana.phone, "+34612345678");
        assert_eq!(ana.name.as_deref(), Some("Ana"));
        assert_eq!(ana.noun.as_deref(), Some("Sra."));
        assert_eq!(ana.group.as_deref(), Some("VIP"));
        assert_eq!(
            ana.attributes.get("ciudad").map(String::as_str),
            Some("Madrid")
        );
        let jose = rows[1].1.as_ref().expect("jose");
        assert_eq!(jose.name.as_deref(), Some("José"));
        assert_eq!(jose.phone, "+34699111222");
    }

    #[test]
    fn windows_1252_punctuation_and_euro_are_read_as_excel_wrote_them() {
        // Excel on Spanish Windows: "Peña – “VIP”", "l’oferta de 5 €".
        let rows = read(
            b"nombre;telefono;nota\nPe\xf1a \x96 \x93VIP\x94;612345678;l\x92oferta de 5 \x80\n",
        );
        let row = rows[0].1.as_ref().expect("row");
        assert_eq!(row.name.as_deref(), Some("Peña – “VIP”"));
        assert_eq!(
            row.attributes.get("nota").map(String::as_str),
            Some("l’oferta de 5 €")
        );
    }

    #[test]
    fn bad_rows_are_reported_and_the_rest_kept() {
        let rows = read(
            b"phone,name\n+34612345678,A\n,B\nnot a phone,C\n0034 612 345 678,D\n+1 202 555 0143,E\n",
        );
        let codes: Vec<_> = rows
            .iter()
            .map(|(line, r)| {
                (
                    *line,
                    r.as_ref().map(|c| c.phone.to_string()).map_err(|e| e.code),
                )
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                (2, Ok("+34612345678".into())),
                (3, Err("phone-missing")),
                (4, Err("phone-invalid")),
                (5, Err("duplicate-in-file")),
                (6, Ok("+12025550143".into())),
            ]
        );
    }

    #[test]
    fn a_file_without_a_phone_column_is_refused() {
        let err = ContactsCsv::new(&b"name,city\nA,B\n"[..], country::Id::ES)
            .err()
            .expect("refused");
        assert!(matches!(err, FileError::NoPhoneColumn(_)), "{err}");
        assert!(matches!(
            ContactsCsv::new(&b""[..], country::Id::ES).err(),
            Some(FileError::Empty)
        ));
    }

    #[test]
    fn phone_keys_are_the_numbers_and_nothing_else_takes_one() {
        assert_eq!(phone_key("+34612345678"), 34_612_345_678);
        assert_eq!(phone_key("+999999999999999"), 999_999_999_999_999);
        assert_ne!(phone_key("+12025550143"), phone_key("+12025550134"));
        // Not E.164 (never met): hashed where no phone's key is.
        assert!(phone_key("+1234567890123456") >= 1 << 63);
        assert!(phone_key("+34 612") >= 1 << 63);
    }

    #[test]
    fn headers_are_normalised() {
        assert_eq!(normalise_header(" Teléfono Móvil "), "telefono_movil");
        assert_eq!(column_for("Teléfono"), Column::Phone);
        assert_eq!(column_for("Grupo"), Column::Group);
        assert_eq!(
            column_for("Código-Postal"),
            Column::Attribute("codigo_postal".into())
        );
        assert_eq!(column_for("_skip_3"), Column::Ignored);
        assert_eq!(column_for("  "), Column::Ignored);
    }
}
