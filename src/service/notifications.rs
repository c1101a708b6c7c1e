//! Notifications (issue 20): keys expiring within the policy's `notify_expiring_days`, keys
//! the current policy no longer accepts, compromised keys, and pending access requests reach
//! their owners or approvers by email; admins get one digest a UTC day; a chat webhook, if
//! set, gets each notice too.
//!
//! A round ([`Services::notification_round`]) runs in one process at a time across every
//! instance: it holds a PostgreSQL advisory lock on a connection of its own, as the
//! shared-prime scan does, and another process that finds the lock taken skips the round.
//!
//! What is due is decided in SQL ([`Services::collect_due_notices`]): a notice is due on a
//! channel until `notifications_sent` has its row (migrations/0012_notifications.sql). Keys are
//! judged as the dashboard judges them: the shapes the policy refuses from the shape tallies,
//! then each listed key validated from its bytes (`key_view`), so a notice states the same
//! verdict as every read.
//!
//! Delivery is **at-least-once**: the row is written, with its audit event, only after the SMTP
//! server (or the webhook) accepted the notice. A crash between the two sends it again next
//! round; a failed send records nothing, so the notice stays due and goes out in a later round.
//! Losing a warning that a key is compromised is worse than sending it twice.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::keys::{KeyStatus, KeyView};
use super::{Ctx, ServiceError, Services};
use crate::keys::KeyErrorCode;
use crate::notify::{Email, Mailer, Webhook};
use crate::store;
use crate::store::notifications::{DueKey, EMAIL, WEBHOOK};

/// The advisory lock one sender holds for a round ("kpnt" in ASCII).
const NOTIFY_LOCK: i64 = 0x6b70_6e74;
/// Most candidates of each kind one round takes up; the rest are due in the next round.
const BATCH: i64 = 500;
/// After this long a round sends nothing more: the notices left are deferred to the next
/// round, and the lock is released. Each send is bounded too (the mailer's and the webhook's
/// timeouts), so a round ends at most one send's timeout after this.
const ROUND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Where notices go: the transports `serve` or `keyportal notify run` was configured with, and
/// the portal's public address for the links in them.
#[derive(Debug, Clone, Default)]
pub struct Transports {
    pub mailer: Option<Mailer>,
    pub webhook: Option<Webhook>,
    /// E.g. `https://keys.example.com`; without it notices carry no link.
    pub public_url: Option<String>,
}

impl Transports {
    /// Whether there is anywhere to send to.
    pub fn is_empty(&self) -> bool {
        self.mailer.is_none() && self.webhook.is_none()
    }

    fn link(&self, path: &str) -> Option<String> {
        self.public_url
            .as_deref()
            .map(|u| format!("{}{path}", u.trim_end_matches('/')))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    KeyExpiring,
    KeyInvalid,
    KeyCompromised,
    AccessRequestPending,
    AdminDigest,
}

impl NoticeKind {
    /// As `notifications_sent.kind` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::KeyExpiring => "key_expiring",
            NoticeKind::KeyInvalid => "key_invalid",
            NoticeKind::KeyCompromised => "key_compromised",
            NoticeKind::AccessRequestPending => "access_request_pending",
            NoticeKind::AdminDigest => "admin_digest",
        }
    }
}

/// Who a notice goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A person, by email.
    Person {
        user_id: i64,
        username: String,
        address: String,
    },
    /// The chat webhook.
    Webhook,
}

/// One notice to one recipient.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: NoticeKind,
    /// The key's or access request's id; `digest` for the digest.
    pub subject: String,
    /// What makes it distinct from an earlier notice of the same kind and subject.
    pub period: String,
    pub recipient: Recipient,
    /// The email's subject line (the webhook's `title`).
    pub title: String,
    /// The email's body, or the webhook's `text`.
    pub text: String,
    /// Further fields of the webhook's JSON.
    pub facts: serde_json::Value,
}

/// What is due now, and the people it cannot reach.
#[derive(Debug, Default)]
pub struct DueNotices {
    pub notices: Vec<Notice>,
    pub skipped: Vec<Skipped>,
}

/// A notice that was not sent because its recipient cannot get it.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub kind: NoticeKind,
    pub subject: String,
    pub username: String,
    /// `no_email`: the user has no email address.
    pub reason: &'static str,
}

/// A notice that went out.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub kind: NoticeKind,
    pub subject: String,
    pub period: String,
    /// `email` or `webhook`.
    pub channel: &'static str,
    /// The person mailed (email only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A notice whose delivery failed; it stays due.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub kind: NoticeKind,
    pub subject: String,
    pub channel: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub error: String,
}

/// What one round did (`keyportal notify run` prints it as JSON).
#[derive(Debug, Default, Serialize)]
pub struct RoundReport {
    /// `false`: another process was sending, so this one did nothing.
    pub ran: bool,
    pub sent: Vec<Delivery>,
    pub skipped: Vec<Skipped>,
    pub failed: Vec<Failure>,
    /// Notices not tried because their channel failed earlier in the round (they stay due).
    pub deferred: usize,
}

const DATE: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");
const DATE_TIME: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");

fn day(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(DATE)
        .unwrap_or_else(|_| t.to_string())
}

fn when(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(DATE_TIME)
        .unwrap_or_else(|_| t.to_string())
}

/// How a key is named to its owner: its title, else its comment, else its fingerprint.
fn key_name(k: &KeyView) -> String {
    let name = [&k.title, &k.comment]
        .into_iter()
        .find(|s| !s.trim().is_empty())
        .unwrap_or(&k.fingerprint_sha256);
    format!("\"{name}\"")
}

/// The key's lines of a notice.
fn key_facts(k: &KeyView) -> String {
    let mut lines = format!(
        "  Key:         {} {}\n  Fingerprint: {}\n",
        k.algorithm, k.bits, k.fingerprint_sha256
    );
    if !k.title.is_empty() {
        lines.push_str(&format!("  Title:       {}\n", k.title));
    }
    if !k.comment.is_empty() {
        lines.push_str(&format!("  Comment:     {}\n", k.comment));
    }
    if let Some(e) = k.expires_at {
        lines.push_str(&format!("  Expires:     {}\n", when(e)));
    }
    lines
}

fn key_json(k: &KeyView, link: &Option<String>) -> serde_json::Value {
    json!({
        "username": k.username,
        "key_id": k.id,
        "fingerprint": k.fingerprint_sha256,
        "algorithm": k.algorithm,
        "bits": k.bits,
        "title": k.title,
        "comment": k.comment,
        "expires_at": k.expires_at.map(|e| e.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()),
        "link": link,
    })
}

/// The subject line, the owner's email body and the webhook's text of a key notice.
fn key_notice_text(
    kind: NoticeKind,
    k: &KeyView,
    now: OffsetDateTime,
    link: &Option<String>,
) -> (String, String, String) {
    let name = key_name(k);
    let problem = k
        .problem
        .as_ref()
        .map(|p| format!("{} ({})", p.message, p.code.as_str()))
        .unwrap_or_default();
    let (title, what, summary) = match kind {
        NoticeKind::KeyExpiring => {
            let expires = k.expires_at.unwrap_or(now);
            let days = (expires - now).whole_days();
            (
                format!("Your SSH key {name} expires on {}", day(expires)),
                format!(
                    "your SSH key {name} expires on {} (in {days} day(s)). After that, servers \
                     no longer accept it: add a new key before then.",
                    when(expires)
                ),
                format!(
                    "{}'s SSH key {name} ({}) expires on {}.",
                    k.username,
                    k.fingerprint_sha256,
                    when(expires)
                ),
            )
        }
        NoticeKind::KeyInvalid => (
            format!("Your SSH key {name} is no longer accepted"),
            format!(
                "the key policy no longer accepts your SSH key {name}: {problem}. Servers no \
                 longer accept it; replace it with a key the policy accepts."
            ),
            format!(
                "{}'s SSH key {name} ({}) is no longer accepted: {problem}.",
                k.username, k.fingerprint_sha256
            ),
        ),
        _ => (
            format!("Your SSH key {name} is compromised and blocked"),
            format!(
                "your SSH key {name} is compromised: {problem}. It has been blocked everywhere. \
                 Stop using it, and make and add a new key."
            ),
            format!(
                "{}'s SSH key {name} ({}) is compromised and blocked: {problem}.",
                k.username, k.fingerprint_sha256
            ),
        ),
    };
    let mut body = format!("Hello {},\n\n{what}\n\n{}", k.username, key_facts(k));
    if let Some(link) = link {
        body.push_str(&format!("\nYour keys: {link}\n"));
    }
    (title, body, summary)
}

impl Services {
    /// Every notice due now, for the channels `transports` has. Changes nothing.
    #[tracing::instrument(skip_all)]
    pub async fn collect_due_notices(
        &self,
        transports: &Transports,
        now: OffsetDateTime,
    ) -> Result<DueNotices, ServiceError> {
        self.collect_due_notices_in_batches_of(transports, now, BATCH)
            .await
    }

    /// [`Self::collect_due_notices`] with another batch size (tests use a small one).
    #[doc(hidden)]
    pub async fn collect_due_notices_in_batches_of(
        &self,
        transports: &Transports,
        now: OffsetDateTime,
        batch: i64,
    ) -> Result<DueNotices, ServiceError> {
        let email = transports.mailer.is_some();
        let webhook = transports.webhook.is_some();
        let mut due = DueNotices::default();
        if !email && !webhook {
            return Ok(due);
        }
        let policy = super::policy::current(&self.pool).await?;
        let soon = now + Duration::days(policy.notify_expiring_days.into());
        let verdicts = self.whole_set_verdicts(&policy, now, soon).await?;
        let keys_link = transports.link("/keys");

        // Keys: each candidate validated from its bytes; the notice must state the verdict
        // every read gives (a key both expiring and refused is told it is refused).
        let codes: Vec<(crate::keys::KeyShape, &str)> = verdicts
            .invalid_shapes
            .iter()
            .filter_map(|s| s.policy_verdict(&policy).map(|c| (s.clone(), c.as_str())))
            .collect();
        let mut judged = Vec::new();
        for kind in [
            NoticeKind::KeyExpiring,
            NoticeKind::KeyInvalid,
            NoticeKind::KeyCompromised,
        ] {
            judged.extend(
                self.applicable_key_notices(
                    kind, &policy, &codes, now, soon, email, webhook, batch,
                )
                .await?,
            );
        }
        for (kind, d, view) in judged {
            let (title, body, summary) = key_notice_text(kind, &view, now, &keys_link);
            let subject = d.key.id.to_string();
            let facts = key_json(&view, &keys_link);
            self.push_due(
                &mut due,
                email,
                Due {
                    kind,
                    subject: &subject,
                    period: &d.period,
                    user_id: d.key.user_id,
                    username: &d.key.username,
                    address: d.address.as_deref(),
                    email_due: d.email_due,
                },
                &title,
                body,
            );
            if d.webhook_due {
                due.notices.push(Notice {
                    kind,
                    subject,
                    period: d.period.clone(),
                    recipient: Recipient::Webhook,
                    title,
                    text: summary,
                    facts,
                });
            }
        }

        // Pending access requests, to each person who may decide them.
        let requests_link = transports.link("/access-requests");
        let requests = store::notifications::pending_requests(
            &self.pool,
            NoticeKind::AccessRequestPending.as_str(),
            now,
            email,
            webhook,
            batch,
        )
        .await?;
        let mut told_webhook = HashSet::new();
        for r in requests {
            let target = match (&r.server, &r.server_group) {
                (Some(s), _) => format!("server {s}"),
                (None, Some(g)) => format!("server group {g}"),
                (None, None) => "a server that no longer exists".to_owned(),
            };
            let title = format!(
                "Access request: {} asks to log in as {} on {target}",
                r.requester, r.login
            );
            let summary = format!(
                "{} asks to log in as {} on {target} for {} hour(s): \"{}\". Waiting for a decision until {}.",
                r.requester,
                r.login,
                r.duration_hours,
                r.reason,
                when(r.lapses_at)
            );
            let mut body = format!(
                "Hello {},\n\n{summary}\n\nYou may approve or deny it; without a decision it lapses then.\n",
                r.approver
            );
            if let Some(link) = &requests_link {
                body.push_str(&format!("\nDecide: {link}\n"));
            }
            let subject = r.id.to_string();
            self.push_due(
                &mut due,
                email,
                Due {
                    kind: NoticeKind::AccessRequestPending,
                    subject: &subject,
                    period: "pending",
                    user_id: r.approver_id,
                    username: &r.approver,
                    address: r.address.as_deref(),
                    email_due: r.email_due,
                },
                &title,
                body,
            );
            if r.webhook_due && told_webhook.insert(r.id) {
                due.notices.push(Notice {
                    kind: NoticeKind::AccessRequestPending,
                    subject,
                    period: "pending".into(),
                    recipient: Recipient::Webhook,
                    title,
                    text: summary,
                    facts: json!({
                        "request_id": r.id,
                        "requester": r.requester,
                        "server": r.server,
                        "server_group": r.server_group,
                        "login": r.login,
                        "duration_hours": r.duration_hours,
                        "reason": r.reason,
                        "link": requests_link,
                    }),
                });
            }
        }

        // The admins' digest, once a UTC day.
        let today = day(now);
        let kind = NoticeKind::AdminDigest.as_str();
        let admins = store::notifications::admins(&self.pool, kind, &today).await?;
        let digest_to_webhook = webhook
            && !store::notifications::webhook_sent(&self.pool, kind, "digest", &today).await?;
        let any_admin_due = email && admins.iter().any(|a| a.email_due || a.address.is_none());
        if any_admin_due || digest_to_webhook {
            let compromised = store::notifications::count_compromised(
                &self.pool,
                crate::keys::compromised::CHECKS_VERSION,
            )
            .await?;
            let pending = store::notifications::count_pending_requests(&self.pool, now).await?;
            let summary = format!(
                "keyportal on {today}: {} key(s) in all; {} expiring within {} day(s), {} no \
                 longer accepted by the policy, {} compromised, {} expired; {} access \
                 request(s) waiting for a decision.",
                verdicts.keys,
                verdicts.expiring,
                policy.notify_expiring_days,
                verdicts.invalid,
                compromised,
                verdicts.expired,
                pending
            );
            let title = format!("keyportal daily summary, {today}");
            let counts = json!({
                "date": today,
                "keys": verdicts.keys,
                "expiring": verdicts.expiring,
                "expiring_days": policy.notify_expiring_days,
                "invalid": verdicts.invalid,
                "compromised": compromised,
                "expired": verdicts.expired,
                "pending_requests": pending,
                "link": transports.link("/"),
            });
            for a in &admins {
                let mut body = format!(
                    "Hello {},\n\nthe day's summary of keyportal ({today}, UTC):\n\n\
                     Keys in all: {}\n\
                     Expiring within {} day(s): {}\n\
                     No longer accepted by the policy: {}\n\
                     Compromised: {}\n\
                     Expired: {}\n\
                     Access requests waiting for a decision: {}\n",
                    a.username,
                    verdicts.keys,
                    policy.notify_expiring_days,
                    verdicts.expiring,
                    verdicts.invalid,
                    compromised,
                    verdicts.expired,
                    pending
                );
                if let Some(link) = transports.link("/") {
                    body.push_str(&format!("\nThe dashboard: {link}\n"));
                }
                self.push_due(
                    &mut due,
                    email,
                    Due {
                        kind: NoticeKind::AdminDigest,
                        subject: "digest",
                        period: &today,
                        user_id: a.id,
                        username: &a.username,
                        address: a.address.as_deref(),
                        email_due: a.email_due,
                    },
                    &title,
                    body,
                );
            }
            if digest_to_webhook {
                due.notices.push(Notice {
                    kind: NoticeKind::AdminDigest,
                    subject: "digest".into(),
                    period: today.clone(),
                    recipient: Recipient::Webhook,
                    title,
                    text: summary,
                    facts: counts,
                });
            }
        }
        Ok(due)
    }

    /// Up to about `batch` candidates of one kind of key notice that apply, each with its
    /// verdict. A candidate can be due in SQL and yet not apply once its key is validated
    /// (an expiring key the policy refuses; a compromised key whose first verdict is a
    /// policy rule, which is told as `key_invalid`): such rows stay due and sort where they
    /// were, so one page of `batch` rows could be all of them, round after round, and crowd
    /// out every later key. So this reads on, page after page, past them until `batch`
    /// candidates apply or the rows run out (at most `MAX_PAGES` pages a round).
    #[allow(clippy::too_many_arguments)]
    async fn applicable_key_notices(
        &self,
        kind: NoticeKind,
        policy: &crate::keys::Policy,
        codes: &[(crate::keys::KeyShape, &str)],
        now: OffsetDateTime,
        soon: OffsetDateTime,
        email: bool,
        webhook: bool,
        batch: i64,
    ) -> Result<Vec<(NoticeKind, DueKey, KeyView)>, ServiceError> {
        const MAX_PAGES: i64 = 20;
        let mut out = Vec::new();
        for page in 0..MAX_PAGES {
            let offset = page * batch;
            let rows = match kind {
                NoticeKind::KeyExpiring => {
                    store::notifications::expiring_keys(
                        &self.pool,
                        kind.as_str(),
                        now,
                        soon,
                        email,
                        webhook,
                        batch,
                        offset,
                    )
                    .await?
                }
                NoticeKind::KeyInvalid => {
                    store::notifications::keys_of_shapes(
                        &self.pool,
                        kind.as_str(),
                        codes,
                        now,
                        email,
                        webhook,
                        batch,
                        offset,
                    )
                    .await?
                }
                _ => {
                    store::notifications::compromised_keys(
                        &self.pool,
                        kind.as_str(),
                        crate::keys::compromised::CHECKS_VERSION,
                        email,
                        webhook,
                        batch,
                        offset,
                    )
                    .await?
                }
            };
            let full_page = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= batch;
            let services = self.clone();
            let judged_policy = policy.clone();
            let judged = tokio::task::spawn_blocking(move || {
                rows.into_iter()
                    .map(|d| {
                        let view = services.key_view(d.key.clone(), &judged_policy, now);
                        (d, view)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| ServiceError::Internal(format!("key validation task failed: {e}")))?;
            for (d, view) in judged {
                let compromised_now = view
                    .problem
                    .as_ref()
                    .is_some_and(|p| p.code == KeyErrorCode::KeyCompromised);
                let applies = match kind {
                    NoticeKind::KeyExpiring => view.status == KeyStatus::Valid,
                    NoticeKind::KeyInvalid => view.status == KeyStatus::Invalid && !compromised_now,
                    _ => compromised_now,
                };
                if applies {
                    out.push((kind, d, view));
                }
            }
            if !full_page || i64::try_from(out.len()).unwrap_or(i64::MAX) >= batch {
                break;
            }
        }
        Ok(out)
    }

    /// Adds a person's email notice, or notes that they have no address.
    fn push_due(&self, due: &mut DueNotices, email: bool, d: Due<'_>, title: &str, body: String) {
        if !email {
            return;
        }
        match d.address {
            None => due.skipped.push(Skipped {
                kind: d.kind,
                subject: d.subject.to_owned(),
                username: d.username.to_owned(),
                reason: "no_email",
            }),
            Some(address) if d.email_due => due.notices.push(Notice {
                kind: d.kind,
                subject: d.subject.to_owned(),
                period: d.period.to_owned(),
                recipient: Recipient::Person {
                    user_id: d.user_id,
                    username: d.username.to_owned(),
                    address: address.to_owned(),
                },
                title: title.to_owned(),
                text: body,
                facts: serde_json::Value::Null,
            }),
            Some(_) => {}
        }
    }

    /// One notification round: sends what is due and records each notice the server
    /// accepted. Another process holding the round's lock makes this one skip (`ran: false`).
    /// Delivery failures are in the report (the notices stay due); an error is returned only
    /// when the database fails.
    #[tracing::instrument(skip_all)]
    pub async fn notification_round(
        &self,
        ctx: &Ctx,
        transports: &Transports,
    ) -> Result<RoundReport, ServiceError> {
        if !ctx.caller.is_admin() {
            return Err(ServiceError::Forbidden(
                "notification rounds are run by the portal itself or its operator",
            ));
        }
        // A connection of its own, never handed back to the pool: the advisory lock belongs to
        // the session, so if the round is dropped midway the connection closes and the lock
        // goes with it (see `scan_shared_primes`).
        let mut lock = self.pool.acquire().await?.detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(NOTIFY_LOCK)
            .fetch_one(&mut lock)
            .await?;
        let result = if locked {
            self.notification_round_locked(ctx, transports).await
        } else {
            Ok(RoundReport::default())
        };
        // Released explicitly before the session closes: a closed session's locks go only
        // when its server process has exited, which can be after the next round asks.
        if locked {
            if let Err(e) = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(NOTIFY_LOCK)
                .execute(&mut lock)
                .await
            {
                tracing::warn!(error = %e, "releasing the notification round's lock failed; closing its session releases it");
            }
        }
        if let Err(e) = sqlx::Connection::close(lock).await {
            tracing::warn!(error = %e, "closing the notification round's lock connection failed; the server ends the session and its lock");
        }
        result
    }

    async fn notification_round_locked(
        &self,
        ctx: &Ctx,
        transports: &Transports,
    ) -> Result<RoundReport, ServiceError> {
        let now = OffsetDateTime::now_utc();
        let due = self.collect_due_notices(transports, now).await?;
        let mut report = RoundReport {
            ran: true,
            skipped: due.skipped,
            ..RoundReport::default()
        };
        let (mut email_down, mut webhook_down) = (false, false);
        let deadline = tokio::time::Instant::now() + ROUND_DEADLINE;
        for n in due.notices {
            if tokio::time::Instant::now() >= deadline {
                report.deferred += 1;
                continue;
            }
            let (channel, username, address) = match &n.recipient {
                Recipient::Person {
                    username, address, ..
                } => (EMAIL, Some(username.clone()), Some(address.clone())),
                Recipient::Webhook => (WEBHOOK, None, None),
            };
            let sent = match (&n.recipient, &transports.mailer, &transports.webhook) {
                (Recipient::Person { .. }, _, _) if email_down => None,
                (Recipient::Webhook, _, _) if webhook_down => None,
                (Recipient::Person { address, .. }, Some(mailer), _) => Some(
                    mailer
                        .send(&Email {
                            to: address.clone(),
                            subject: n.title.clone(),
                            body: n.text.clone(),
                        })
                        .await
                        .map_err(|e| {
                            // A refusal of this one message or recipient (a 450 for one
                            // mailbox) leaves the server usable for the others: only a
                            // failure of the connection, TLS, AUTH or a timeout stops email
                            // for the rest of the round.
                            email_down |= !e.is_about_the_message();
                            e.to_string()
                        }),
                ),
                (Recipient::Webhook, _, Some(hook)) => {
                    let body = webhook_body(&n);
                    Some(hook.post(&body).await.map_err(|e| {
                        webhook_down |= !e.is_about_the_message();
                        e.to_string()
                    }))
                }
                // No transport for this channel: collect_due_notices makes none.
                _ => None,
            };
            match sent {
                None => report.deferred += 1,
                Some(Err(error)) => {
                    tracing::warn!(kind = n.kind.as_str(), subject = %n.subject, channel, error = %error,
                        "a notice was not delivered; it stays due for the next round");
                    report.failed.push(Failure {
                        kind: n.kind,
                        subject: n.subject,
                        channel,
                        username,
                        error,
                    });
                }
                Some(Ok(())) => {
                    self.record_delivery(ctx, &n, channel).await?;
                    report.sent.push(Delivery {
                        kind: n.kind,
                        subject: n.subject,
                        period: n.period,
                        channel,
                        username,
                        address,
                    });
                }
            }
        }
        Ok(report)
    }

    /// Records an accepted notice with its audit event, in one transaction. If this fails the
    /// notice was sent but not recorded: it goes out again next round (at-least-once).
    async fn record_delivery(
        &self,
        ctx: &Ctx,
        n: &Notice,
        channel: &'static str,
    ) -> Result<(), ServiceError> {
        let (user_id, username, address) = match &n.recipient {
            Recipient::Person {
                user_id,
                username,
                address,
            } => (
                Some(*user_id),
                Some(username.as_str()),
                Some(address.as_str()),
            ),
            Recipient::Webhook => (None, None, None),
        };
        let record = async {
            let mut tx = self.pool.begin().await?;
            let fresh = store::notifications::record(
                &mut *tx,
                &store::notifications::Delivered {
                    kind: n.kind.as_str(),
                    subject: &n.subject,
                    channel,
                    user_id,
                    address,
                    period: &n.period,
                },
            )
            .await?;
            let target = username.map_or_else(|| "webhook".to_owned(), |u| format!("user:{u}"));
            super::audit::record(
                &mut *tx,
                ctx,
                "notification.sent",
                &target,
                json!({ "kind": n.kind, "subject": n.subject, "period": n.period, "channel": channel, "address": address }),
            )
            .await?;
            tx.commit().await?;
            Ok::<bool, sqlx::Error>(fresh)
        };
        match record.await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::warn!(kind = n.kind.as_str(), subject = %n.subject, channel,
                    "a notice was delivered that was already recorded as delivered");
                Ok(())
            }
            Err(e) => {
                tracing::error!(kind = n.kind.as_str(), subject = %n.subject, channel, error = %e,
                    "a delivered notice could not be recorded; it will be sent again");
                Err(e.into())
            }
        }
    }
}

/// The JSON a webhook gets for a notice. `text` and `title` carry people's words (a key's
/// title or comment, a request's reason), so chat markup in them is escaped; the notice's own
/// wording has none. The further fields are data, as stored.
fn webhook_body(n: &Notice) -> serde_json::Value {
    let mut body = json!({
        "kind": n.kind,
        "title": crate::notify::escape_chat_text(&n.title),
        "text": crate::notify::escape_chat_text(&n.text),
        "subject": n.subject,
    });
    if let (Some(obj), serde_json::Value::Object(facts)) = (body.as_object_mut(), &n.facts) {
        for (k, v) in facts {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    body
}

/// A person's candidate notice, as the queries return it.
struct Due<'a> {
    kind: NoticeKind,
    subject: &'a str,
    period: &'a str,
    user_id: i64,
    username: &'a str,
    address: Option<&'a str>,
    email_due: bool,
}

/// Runs a notification round every `every_secs` seconds (the first at start) when there is
/// somewhere to send to; 0 turns it off. One process sends at a time (the advisory lock); the
/// others skip that round. A failing SMTP server or database is logged and tried again at
/// the next interval.
pub fn spawn_scheduled_notifications(
    services: Services,
    transports: Arc<Transports>,
    every_secs: u64,
) -> Option<tokio::task::JoinHandle<()>> {
    if every_secs == 0 || transports.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match services
                .notification_round(&Ctx::command_line(), &transports)
                .await
            {
                // Debug, not warn: with several instances all but one skip every round, so a
                // skip, even a persistent one, is the normal case. A holder that hangs cannot
                // keep the lock for long: its round stops sending at ROUND_DEADLINE, each send
                // is bounded by its transport's timeout, and a dead holder's session (and lock)
                // ends with its connection.
                Ok(r) if !r.ran => {
                    tracing::debug!("another process is sending notifications; skipped")
                }
                Ok(r) if !r.failed.is_empty() => tracing::warn!(
                    sent = r.sent.len(),
                    failed = r.failed.len(),
                    deferred = r.deferred,
                    skipped = r.skipped.len(),
                    first_error = %r.failed[0].error,
                    "notification round: some notices were not delivered; they stay due"
                ),
                Ok(r) if !r.sent.is_empty() => tracing::info!(
                    sent = r.sent.len(),
                    skipped = r.skipped.len(),
                    "notification round done"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the notification round failed; next try at the next interval")
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhooks_text_shows_peoples_words_without_chat_markup() {
        let n = Notice {
            kind: NoticeKind::AccessRequestPending,
            subject: "7".into(),
            period: "pending".into(),
            recipient: Recipient::Webhook,
            title: "Access request: mallory asks to log in as root on server web1".into(),
            text: "mallory asks to log in as root on server web1 for 1 hour(s): \"<!channel> \
                   <https://evil.example|approve here> & now\"."
                .into(),
            facts: json!({ "reason": "<!channel>" }),
        };
        let body = webhook_body(&n);
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("&lt;!channel&gt; &lt;https://evil.example|approve here&gt; &amp; now"),
            "{text}"
        );
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert_eq!(body["kind"], "access_request_pending");
        assert_eq!(body["subject"], "7");
        // The data fields are not chat text; a consumer gets them as stored.
        assert_eq!(body["reason"], "<!channel>");
    }
}
