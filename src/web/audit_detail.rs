//! The audit log's detail column as a person reads it: an event's JSON detail becomes
//! key/value rows, nested objects and arrays flattened into paths (`policy.min_rsa_bits`,
//! `lines[2].status`), strings without their quotes, and a list of plain values on one row.
//! The page keeps the raw JSON (pretty-printed) one click away for anyone who needs the exact
//! document. Escaping is the template's (askama autoescapes every value).

use serde_json::Value;

use crate::service::audit::AuditEvent;

/// One line of an event's detail: where in the JSON document, and the value there.
#[derive(Debug, PartialEq, Eq)]
pub struct DetailRow {
    pub key: String,
    pub value: String,
}

/// An audit event as the page shows it.
pub struct AuditEntry {
    pub event: AuditEvent,
    pub rows: Vec<DetailRow>,
    /// The detail as pretty-printed JSON.
    pub raw: String,
}

impl From<AuditEvent> for AuditEntry {
    fn from(event: AuditEvent) -> AuditEntry {
        let rows = detail_rows(&event.detail);
        let raw = serde_json::to_string_pretty(&event.detail).unwrap_or_default();
        AuditEntry { event, rows, raw }
    }
}

/// The rows of `detail`, in its map's key order; none for an empty object.
pub fn detail_rows(detail: &Value) -> Vec<DetailRow> {
    let mut rows = Vec::new();
    flatten(String::new(), detail, &mut rows);
    rows
}

fn flatten(path: String, value: &Value, rows: &mut Vec<DetailRow>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                flatten(path, inner, rows);
            }
            if map.is_empty() && !path.is_empty() {
                rows.push(DetailRow {
                    key: path,
                    value: "none".into(),
                });
            }
        }
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
            for (i, inner) in items.iter().enumerate() {
                flatten(format!("{path}[{i}]"), inner, rows);
            }
        }
        plain => rows.push(DetailRow {
            key: if path.is_empty() {
                "value".into()
            } else {
                path
            },
            value: shown(plain),
        }),
    }
}

/// A value that holds no object: a string as it is, a list of plain values joined by commas.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The rows, sorted: the key order is serde_json's map order, which is not the point here.
    fn rows(detail: Value) -> Vec<(String, String)> {
        let mut rows: Vec<_> = detail_rows(&detail)
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect();
        rows.sort();
        rows
    }

    fn row(key: &str, value: &str) -> (String, String) {
        (key.into(), value.into())
    }

    #[test]
    fn flat_details_are_one_row_per_key_with_strings_unquoted() {
        assert_eq!(
            rows(json!({ "fingerprint": "SHA256:abc", "bits": 4096, "admin": true })),
            [
                row("admin", "true"),
                row("bits", "4096"),
                row("fingerprint", "SHA256:abc"),
            ]
        );
    }

    #[test]
    fn nested_objects_and_lists_become_paths() {
        assert_eq!(
            rows(json!({
                "policy": { "min_rsa_bits": 3072, "allowed_algorithms": ["ssh-ed25519", "ssh-rsa"] },
                "lines": [{ "line": 1, "status": "added" }, { "line": 2, "status": "rejected" }],
                "owners": [],
                "expires_at": null,
                "changes": {}
            })),
            [
                row("changes", "none"),
                row("expires_at", "none"),
                row("lines[0].line", "1"),
                row("lines[0].status", "added"),
                row("lines[1].line", "2"),
                row("lines[1].status", "rejected"),
                row("owners", "none"),
                row("policy.allowed_algorithms", "ssh-ed25519, ssh-rsa"),
                row("policy.min_rsa_bits", "3072"),
            ]
        );
    }

    #[test]
    fn an_empty_detail_has_no_rows_and_a_bare_value_has_one() {
        assert!(rows(json!({})).is_empty());
        assert_eq!(rows(json!("sign-in")), [row("value", "sign-in")]);
    }

    #[test]
    fn markup_in_values_is_kept_as_text_for_the_template_to_escape() {
        let entry = AuditEntry::from(AuditEvent {
            id: 1,
            at: time::OffsetDateTime::UNIX_EPOCH,
            actor: "cli".into(),
            action: "server.create".into(),
            target: "server:web1".into(),
            detail: json!({ "hostname": "<script>x</script>" }),
            request_id: None,
        });
        assert_eq!(
            entry.rows,
            [DetailRow {
                key: "hostname".into(),
                value: "<script>x</script>".into()
            }]
        );
        assert!(entry.raw.contains("\"hostname\": \"<script>x</script>\""));
    }
}
