//! Access requests: a member asks for a login on a server or a server group for a while; an
//! admin, or an owner of one of the requester's groups that already holds a grant for that
//! target and login, approves (which writes a grant that ends by itself) or denies. Never the
//! requester. Undecided requests lapse after the policy's `access_request_pending_hours`.

use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{Caller, Ctx, ServiceError, Services};
use crate::domain::{BoundedText, LoginName};
use crate::store;
use crate::store::access_requests::RequestRow;
use crate::store::groups::Kind;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessRequestView {
    pub id: Uuid,
    pub requester: String,
    pub server: Option<String>,
    pub server_group: Option<String>,
    pub login: String,
    pub duration_hours: i32,
    pub reason: String,
    /// `pending`, `approved`, `denied` or `expired` (nobody decided in time).
    pub status: String,
    pub decided_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    pub comment: String,
    /// The grant the approval wrote.
    pub grant_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When an undecided request lapses.
    #[serde(with = "time::serde::rfc3339")]
    pub lapses_at: OffsetDateTime,
    /// Whether the caller may approve or deny it now.
    pub can_decide: bool,
}

impl From<RequestRow> for AccessRequestView {
    fn from(r: RequestRow) -> Self {
        AccessRequestView {
            id: r.id,
            requester: r.requester,
            server: r.server,
            server_group: r.server_group,
            login: r.login,
            duration_hours: r.duration_hours,
            reason: r.reason,
            status: r.status,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            comment: r.comment,
            grant_id: r.grant_id,
            created_at: r.created_at,
            lapses_at: r.lapses_at,
            can_decide: r.can_decide,
        }
    }
}

#[derive(Debug, Default)]
pub struct NewAccessRequest {
    pub server: Option<String>,
    pub server_group: Option<String>,
    pub login: String,
    pub duration_hours: i64,
    pub reason: String,
}

/// A reason (1-1000 characters) or a comment (0-1000), trimmed, without control characters.
fn text<const MIN: usize>(field: &'static str, value: &str) -> Result<String, ServiceError> {
    BoundedText::<MIN, 1000>::parse(value.trim())
        .map(|t| t.as_str().to_owned())
        .map_err(|e| ServiceError::invalid(field, format!("the {field} is {e}")))
}

/// The reader's id and admin standing: the command line reads as an admin with no id.
fn reader(ctx: &Ctx) -> Result<(i64, bool), ServiceError> {
    match &ctx.caller {
        Caller::CommandLine => Ok((-1, true)),
        Caller::User { id, .. } => Ok((*id, ctx.caller.is_admin())),
        Caller::Server { .. } => Err(ServiceError::Forbidden(
            "a server token may only read its own server's authorized_keys",
        )),
    }
}

impl Services {
    #[tracing::instrument(skip_all)]
    pub async fn create_access_request(
        &self,
        ctx: &Ctx,
        new: NewAccessRequest,
    ) -> Result<AccessRequestView, ServiceError> {
        let (reader_id, admin) = reader(ctx)?;
        let Some(requester_id) = ctx.caller.user_id() else {
            return Err(ServiceError::invalid(
                "requester",
                "access requests are made by a signed-in user, for themselves",
            ));
        };
        let login = LoginName::parse(&new.login).map_err(|e| ServiceError::invalid("login", e))?;
        let reason = text::<1>("reason", &new.reason)?;
        let policy = super::policy::current(&self.pool).await?;
        let max = i64::from(policy.max_access_request_hours);
        if !(1..=max).contains(&new.duration_hours) {
            return Err(ServiceError::invalid(
                "duration_hours",
                format!("access can be requested for 1 to {max} hours (the policy's max_access_request_hours)"),
            ));
        }
        let (server_id, server_group_id) = match (&new.server, &new.server_group) {
            (Some(name), None) => (
                Some(
                    store::servers::by_name(&self.pool, name)
                        .await?
                        .ok_or_else(|| {
                            ServiceError::invalid("server", format!("there is no server {name:?}"))
                        })?
                        .id,
                ),
                None,
            ),
            (None, Some(name)) => (
                None,
                Some(
                    store::groups::by_name(&self.pool, Kind::Servers, name)
                        .await?
                        .ok_or_else(|| {
                            ServiceError::invalid(
                                "server_group",
                                format!("there is no server group {name:?}"),
                            )
                        })?
                        .id,
                ),
            ),
            _ => {
                return Err(ServiceError::invalid(
                    "server",
                    "a request names either a server or a server group",
                ))
            }
        };
        let lapses_at = OffsetDateTime::now_utc()
            + Duration::hours(i64::from(policy.access_request_pending_hours));
        let mut tx = self.pool.begin().await?;
        let id = store::access_requests::insert(
            &mut *tx,
            &store::access_requests::NewRequest {
                requester_id,
                server_id,
                server_group_id,
                login: login.as_str(),
                duration_hours: new.duration_hours as i32,
                reason: &reason,
                lapses_at,
            },
        )
        .await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "access_request.create",
            &format!("access-request:{id}"),
            json!({ "server": new.server, "server_group": new.server_group, "login": login.as_str(), "duration_hours": new.duration_hours, "reason": reason }),
        )
        .await?;
        tx.commit().await?;
        self.access_request_view(id, reader_id, admin).await
    }

    /// The requests the caller may see: their own, and those they may decide (admins: all).
    #[tracing::instrument(skip_all)]
    pub async fn list_access_requests(
        &self,
        ctx: &Ctx,
        status: Option<&str>,
    ) -> Result<Vec<AccessRequestView>, ServiceError> {
        let (reader_id, admin) = reader(ctx)?;
        if let Some(s) = status {
            if !["pending", "approved", "denied", "expired"].contains(&s) {
                return Err(ServiceError::invalid(
                    "status",
                    "status is one of pending, approved, denied, expired",
                ));
            }
        }
        let rows = store::access_requests::list(&self.pool, reader_id, admin, status).await?;
        Ok(rows.into_iter().map(AccessRequestView::from).collect())
    }

    /// Approves (`approve`) or denies a pending request, with a comment. Approval writes the
    /// grant, ending `duration_hours` from now, in the same transaction.
    #[tracing::instrument(skip_all)]
    pub async fn decide_access_request(
        &self,
        ctx: &Ctx,
        id: Uuid,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<AccessRequestView, ServiceError> {
        let (reader_id, admin) = reader(ctx)?;
        let comment = text::<0>("comment", comment.unwrap_or(""))?;
        let row = store::access_requests::by_id(&self.pool, id, reader_id, admin)
            .await?
            .filter(|r| r.visible)
            .ok_or(ServiceError::NotFound {
                what: "access request",
            })?;
        if row.requester_id == reader_id {
            return Err(ServiceError::Forbidden(
                "nobody approves or denies their own access request",
            ));
        }
        if row.status != "pending" {
            return Err(ServiceError::Conflict {
                code: "request_closed",
                detail: format!("this request is {} already", row.status),
            });
        }
        if !row.can_decide {
            return Err(ServiceError::Forbidden(
                "only admins and owners of a group of the requester that holds such a grant decide this request",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let grant_id = if approve {
            let ends = OffsetDateTime::now_utc() + Duration::hours(i64::from(row.duration_hours));
            Some(
                store::access_requests::grant_for(&mut *tx, &row, ends, ctx.caller.user_id())
                    .await?,
            )
        } else {
            None
        };
        let decision = if approve { "approved" } else { "denied" };
        if !store::access_requests::decide(
            &mut *tx,
            id,
            decision,
            ctx.caller.user_id(),
            &comment,
            grant_id,
        )
        .await?
        {
            // Decided or lapsed between the read and now: nothing is written.
            return Err(ServiceError::Conflict {
                code: "request_closed",
                detail: "this request was decided or lapsed a moment ago".into(),
            });
        }
        super::audit::record(
            &mut *tx,
            ctx,
            if approve { "access_request.approve" } else { "access_request.deny" },
            &format!("access-request:{id}"),
            json!({ "requester": row.requester, "server": row.server, "server_group": row.server_group, "login": row.login, "duration_hours": row.duration_hours, "comment": comment, "grant_id": grant_id }),
        )
        .await?;
        tx.commit().await?;
        self.access_request_view(id, reader_id, admin).await
    }

    /// One request as the reader sees it, read back after a change.
    async fn access_request_view(
        &self,
        id: Uuid,
        reader_id: i64,
        admin: bool,
    ) -> Result<AccessRequestView, ServiceError> {
        let row = store::access_requests::by_id(&self.pool, id, reader_id, admin)
            .await?
            .ok_or(ServiceError::NotFound {
                what: "access request",
            })?;
        Ok(row.into())
    }
}
