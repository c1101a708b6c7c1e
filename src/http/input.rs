//! Characters no handler should ever see, refused at the door with 400 `invalid_characters`.
//!
//! PostgreSQL refuses NUL in text, so a NUL that reached a query would surface as a database
//! error (a 500). Paths and query strings never legitimately hold control characters, so all
//! of them are refused there, after percent-decoding. Bodies may: a pasted multi-line key has
//! newlines, so in JSON and form bodies only NUL is refused here and the per-field checks in
//! the service answer the rest with 422.
//!
//! Key text is the exception ([`KEY_FIELDS`] and the import body): it goes to the validator,
//! whose contract names a NUL in a key precisely (`comment_invalid`, ...), and nothing it
//! refuses is ever stored.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

pub const INVALID_CHARACTERS: &str = "invalid_characters";

fn invalid(detail: &str) -> ApiError {
    ApiError::BadRequest {
        code: INVALID_CHARACTERS,
        detail: detail.to_owned(),
    }
}

/// `%XX` escapes decoded to bytes; anything else kept as is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Why this part of the address is refused, if it is.
fn check_address_part(part: &str, what: &str) -> Result<(), ApiError> {
    let decoded = percent_decode(part);
    let text = std::str::from_utf8(&decoded)
        .map_err(|_| invalid(&format!("the {what} is not UTF-8 once percent-decoded")))?;
    if text.chars().any(char::is_control) {
        return Err(invalid(&format!(
            "the {what} holds a control character (such as NUL or a newline); remove it"
        )));
    }
    Ok(())
}

/// The query string: control characters refused, except in `next` (where the page to return
/// to after sign-in goes): `web::local_path` reduces anything but a plain local path to `/`
/// before it is used or shown, so a crafted link still lands on the sign-in page, and the
/// value never reaches the database.
fn check_query(query: &str) -> Result<(), ApiError> {
    for pair in query.split('&') {
        if pair.split_once('=').map_or(pair, |(name, _)| name) == "next" {
            continue;
        }
        check_address_part(pair, "query string")?;
    }
    Ok(())
}

/// Middleware: refuses a request whose path or query holds a control character or is not
/// UTF-8, before any route sees it.
pub async fn reject_control_characters(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let checked = check_address_part(uri.path(), "address")
        .and_then(|()| uri.query().map_or(Ok(()), check_query));
    match checked {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Fields that carry SSH key text, judged by the validator rather than here.
pub const KEY_FIELDS: &[&str] = &["key", "text", "file"];

/// A JSON body with NUL in any string (or member name) is refused, but for the top-level key
/// text fields.
pub fn check_json(value: &serde_json::Value) -> Result<(), ApiError> {
    fn has_nul(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(has_nul),
            serde_json::Value::Object(members) => members
                .iter()
                .any(|(name, v)| name.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    let found = match value {
        serde_json::Value::Object(members) => members.iter().any(|(name, v)| {
            name.contains('\0') || (!KEY_FIELDS.contains(&name.as_str()) && has_nul(v))
        }),
        other => has_nul(other),
    };
    if found {
        return Err(invalid(
            "the JSON body holds a NUL character (\\u0000), which no field accepts",
        ));
    }
    Ok(())
}

/// Whether a urlencoded form holds NUL in any field name or value, key text and `next` aside.
pub fn form_has_nul(body: &[u8]) -> bool {
    // `+` means space in forms; it cannot hide a NUL, so plain percent-decoding suffices.
    body.split(|b| *b == b'&').any(|pair| {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let name = percent_decode(&String::from_utf8_lossy(name));
        let value = percent_decode(&String::from_utf8_lossy(value));
        // `next` is reduced to a plain local path (or `/`) before anything uses it.
        let judged_elsewhere = name.as_slice() == b"next"
            || KEY_FIELDS.iter().any(|k| k.as_bytes() == name.as_slice());
        name.contains(&0) || (!judged_elsewhere && value.contains(&0))
    })
}

pub const FORM_NUL: &str = "the form holds a NUL character, which no field accepts";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_decoded_and_broken_ones_kept() {
        assert_eq!(percent_decode("a%00b%2Fc"), b"a\0b/c");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("%"), b"%");
        assert_eq!(percent_decode("x%41"), b"xA");
    }

    #[test]
    fn next_is_left_to_local_path_and_the_rest_is_checked() {
        assert!(check_query("next=/%09/evil.example/").is_ok());
        assert!(check_query("next=/%00").is_ok());
        assert!(check_query("q=%09&next=/").is_err());
        assert!(check_query("next=/&q=%00").is_err());
    }

    #[test]
    fn control_characters_in_the_address_are_refused() {
        assert!(check_address_part("/api/v1/users/alice", "address").is_ok());
        assert!(check_address_part("q=%C3%A9t%C3%A9+x", "query string").is_ok());
        for bad in ["/users/%00", "q=a%0Ab", "q=%7F", "q=%C2%85", "q=%FF"] {
            assert!(check_address_part(bad, "query string").is_err(), "{bad}");
        }
    }

    #[test]
    fn nul_in_form_and_json_is_found_anywhere() {
        assert!(form_has_nul(b"a=1&b=x%00y"));
        assert!(form_has_nul(b"a%00=1"));
        assert!(!form_has_nul(b"a=1&key=line1%0Aline2"));
        // Key text goes to the validator, which names the fault itself.
        assert!(!form_has_nul(b"title=x&key=ssh-ed25519%20AAAA%00"));
        assert!(form_has_nul(b"title=x%00&key=ssh-ed25519"));
        let v: serde_json::Value = serde_json::from_str(r#"{"a":[1,{"b":"x\u0000"}]}"#).unwrap();
        assert!(check_json(&v).is_err());
        let v: serde_json::Value = serde_json::from_str(r#"{"a\u0000":1}"#).unwrap();
        assert!(check_json(&v).is_err());
        let v: serde_json::Value = serde_json::from_str(r#"{"a":"x\ny\\u0000"}"#).unwrap();
        assert!(check_json(&v).is_ok());
        let v: serde_json::Value =
            serde_json::from_str(r#"{"key":"ssh-ed25519 A\u0000"}"#).unwrap();
        assert!(check_json(&v).is_ok());
    }
}
