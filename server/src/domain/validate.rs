//! Field validation shared by every request type. Each check names the field it refuses, so the
//! caller sees e.g. `contact_email is not a valid email address`.

use std::fmt;

/// A request field that failed validation; becomes INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    field: String,
    problem: String,
}

/// Longest field name an error repeats (a map key or a name taken from the request may be
/// any length; the status message travels in a header).
const MAX_FIELD_BYTES: usize = 200;
/// Longest problem text an error repeats.
const MAX_PROBLEM_BYTES: usize = 600;

/// `text` cut to at most `max_bytes` (at a character boundary, marked with `…`), so an error
/// that quotes a request never grows with it.
pub fn shorten(mut text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

impl ValidationError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: shorten(field.into(), MAX_FIELD_BYTES),
            problem: shorten(problem.into(), MAX_PROBLEM_BYTES),
        }
    }

    /// What is wrong with the field, without its name.
    pub fn problem(&self) -> &str {
        &self.problem
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    /// The same problem of a field inside a list item, e.g. `variables[2].key`.
    pub fn within(self, prefix: &str) -> Self {
        Self {
            field: shorten(format!("{prefix}.{}", self.field), MAX_FIELD_BYTES),
            problem: self.problem,
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.field, self.problem)
    }
}

impl std::error::Error for ValidationError {}

/// Largest settings document accepted, in bytes.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;

fn has_control_characters(value: &str, allow_newlines: bool) -> bool {
    value
        .chars()
        .any(|c| c.is_control() && !(allow_newlines && (c == '\n' || c == '\r' || c == '\t')))
}

/// A required single-line text of at most `max` characters, without surrounding whitespace.
pub fn required_line(field: &str, value: &str, max: usize) -> Result<String, ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    optional_line(field, value, max)
}

/// An optional single-line text of at most `max` characters.
pub fn optional_line(field: &str, value: &str, max: usize) -> Result<String, ValidationError> {
    if value.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if has_control_characters(value, false) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    if value.trim() != value {
        return Err(ValidationError::new(
            field,
            "must not start or end with whitespace",
        ));
    }
    Ok(value.to_owned())
}

/// An optional multi-line text (newlines and tabs allowed) of at most `max` characters.
pub fn optional_text(field: &str, value: &str, max: usize) -> Result<String, ValidationError> {
    if value.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if has_control_characters(value, true) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// A slug: 1-63 characters of `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
pub fn slug(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    let valid_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let edges_ok = value
        .bytes()
        .next()
        .zip(value.bytes().last())
        .is_some_and(|(first, last)| first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric());
    if value.len() > 63 || !valid_chars || !edges_ok {
        return Err(ValidationError::new(
            field,
            "must be 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit",
        ));
    }
    Ok(value.to_owned())
}

/// A username: 1-64 characters of `a-z`, `0-9`, `.`, `_` and `-`, starting with a letter or digit.
pub fn username(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    let valid_chars = value.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
    });
    let starts_ok = value
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    if value.len() > 64 || !valid_chars || !starts_ok {
        return Err(ValidationError::new(
            field,
            "must be 1-64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        ));
    }
    Ok(value.to_owned())
}

/// An email address, lower-cased: `local@domain.tld`, at most 254 characters, no spaces.
pub fn email(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    let invalid = || ValidationError::new(field, "is not a valid email address");
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
    let domain_ok = !domain.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63 && !label.starts_with('-'))
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(invalid());
    }
    Ok(value.to_ascii_lowercase())
}

/// An optional email address; empty stays empty.
pub fn optional_email(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.is_empty() {
        Ok(String::new())
    } else {
        email(field, value)
    }
}

/// An optional absolute http(s) URL of at most 2048 characters.
pub fn optional_url(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty()
    });
    if value.len() > 2048 || !host_ok || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ValidationError::new(
            field,
            "must be an http:// or https:// URL of at most 2048 characters",
        ));
    }
    Ok(value.to_owned())
}

/// An optional phone number: digits, spaces and `+ ( ) - .`, at most 50 characters.
pub fn optional_phone(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let valid = value.len() <= 50
        && value.bytes().any(|b| b.is_ascii_digit())
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || b" +()-.".contains(&b));
    if !valid {
        return Err(ValidationError::new(
            field,
            "must be at most 50 characters of digits, spaces and + ( ) - .",
        ));
    }
    Ok(value.to_owned())
}

/// A JSON object given as text; empty means `{}`.
pub fn json_object(field: &str, value: &str) -> Result<serde_json::Value, ValidationError> {
    if value.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    if value.len() > MAX_SETTINGS_BYTES {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_SETTINGS_BYTES} bytes"),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(object @ serde_json::Value::Object(_)) => Ok(object),
        Ok(_) => Err(ValidationError::new(field, "must be a JSON object")),
        Err(error) => Err(ValidationError::new(
            field,
            format!("is not valid JSON: {error}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(slug("name", "acme").is_ok());
        assert!(slug("name", "acme-corp-2").is_ok());
        for bad in [
            "",
            "-acme",
            "acme-",
            "Acme",
            "ac me",
            "acmé",
            &"a".repeat(64),
        ] {
            let error = slug("name", bad).expect_err(bad);
            assert_eq!(error.field(), "name");
        }
    }

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(
            email("email", "Dev1@Acme.COM").expect("valid"),
            "dev1@acme.com"
        );
        for bad in [
            "",
            "dev1",
            "dev1@",
            "@acme.com",
            "dev 1@acme.com",
            "a@b",
            "a@b..com",
            "a@@b.com",
        ] {
            assert!(email("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_must_be_an_object() {
        assert!(json_object("settings", "").expect("empty").is_object());
        assert!(json_object("settings", r#"{"a": 1}"#).is_ok());
        assert_eq!(
            json_object("settings", "[1]")
                .expect_err("array")
                .to_string(),
            "settings must be a JSON object"
        );
        assert!(json_object("settings", "{").is_err());
    }

    #[test]
    fn lines_refuse_control_characters_and_length() {
        assert!(required_line("display_name", "  ", 10).is_err());
        assert!(required_line("display_name", "a\u{0}b", 10).is_err());
        assert!(required_line("display_name", &"x".repeat(11), 10).is_err());
        assert!(optional_text("description", "two\nlines", 20).is_ok());
    }

    #[test]
    fn urls_and_phones() {
        assert!(optional_url("logo_url", "https://acme.com/logo.png").is_ok());
        assert!(optional_url("logo_url", "ftp://acme.com").is_err());
        assert!(optional_url("logo_url", "https://").is_err());
        assert!(optional_phone("contact_phone", "+1 (555) 010-0000").is_ok());
        assert!(optional_phone("contact_phone", "call me").is_err());
    }

    #[test]
    fn errors_never_grow_with_the_request() {
        let long_key = "\u{1F600}".repeat(20_000);
        let error = ValidationError::new(format!("limits[{long_key}]"), "x".repeat(50_000));
        assert!(error.to_string().len() <= MAX_FIELD_BYTES + MAX_PROBLEM_BYTES + 1);
        assert!(error.field().starts_with("limits[\u{1F600}"));
        assert!(error.field().ends_with('…'));
        assert_eq!(shorten("short".into(), 10), "short");
        // `…` takes three bytes; a character is never split.
        assert_eq!(shorten("ééééé".into(), 7), "éé…");
        assert_eq!(shorten("ééééé".into(), 6), "é…");
    }
}
