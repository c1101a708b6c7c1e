//! Storage: every SQL statement, with bound parameters. Functions take an executor so the
//! service layer decides what runs in one transaction.

pub mod access_requests;
pub mod audit;
pub mod blocklist;
pub mod certificates;
pub mod effective_access;
pub mod grants;
pub mod groups;
pub mod keys;
pub mod notifications;
pub mod oidc;
pub mod policy;
pub mod servers;
pub mod sessions;
pub mod tallies;
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

pub fn decode_cursor(cursor: &str, shape: CursorShape) -> Option<String> {
    if cursor.len() > 400 {
        return None;
    }
    let key = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())?;
    // PostgreSQL refuses NUL in text: a cursor is checked here, before any query sees it.
    if key.chars().any(char::is_control) {
        return None;
    }
    let fits = match shape {
        CursorShape::Name => true,
        CursorShape::Id => key.parse::<i64>().is_ok(),
        CursorShape::TimeId => keys::parse_time_id(&key).is_some(),
    };
    fits.then_some(key)
}

/// What the sort key in a list's cursor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorShape {
    /// A unique name (users, servers).
    Name,
    /// A row id (audit events).
    Id,
    /// A creation time and a UUID (keys, grants).
    TimeId,
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

/// One round trip to the database (readiness).
pub async fn ping(db: impl sqlx::PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(db).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_patterns_take_wildcards_literally() {
        assert_eq!(super::contains_pattern("a_b%c\\d"), "%a\\_b\\%c\\\\d%");
    }
}
