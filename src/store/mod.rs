//! Storage: every SQL statement, with bound parameters. Functions take an executor so the
//! service layer decides what runs in one transaction.

pub mod audit;
pub mod grants;
pub mod keys;
pub mod policy;
pub mod servers;
pub mod sessions;
pub mod tokens;
pub mod users;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A page of a list: `limit` rows after the opaque `cursor`.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: i64,
    pub after: Option<String>,
}

/// A case-insensitive substring pattern for `ILIKE`, with the user's `%`, `_` and `\` taken
/// literally.
pub fn contains_pattern(q: &str) -> String {
    format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// Opaque cursors: the sort key of the last row, base64url-encoded.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

pub fn decode_cursor(cursor: &str) -> Option<String> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Takes one row more than asked for, to know whether there is a next page.
pub fn split_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        let next = rows.last().map(|r| encode_cursor(&key(r)));
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_patterns_take_wildcards_literally() {
        assert_eq!(super::contains_pattern("a_b%c\\d"), "%a\\_b\\%c\\\\d%");
    }
}
