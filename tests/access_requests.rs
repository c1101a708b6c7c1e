//! Access requests (issue 16): a member asks, an owner or an admin decides, approval writes a
//! grant that ends by itself; never self-approval; undecided requests lapse. Real HTTP and a
//! real PostgreSQL.

mod common;

use common::{answer, TestApp};
use keyportal::domain::Role;
use serde_json::{json, Value};
use time::OffsetDateTime;

async fn ok(req: reqwest::RequestBuilder, want: u16) -> Value {
    let (status, body) = answer(req).await;
    assert_eq!(status, want, "{body}");
    body
}

struct Team {
    app: TestApp,
    alice: String,
    bob: String,
    carol: String,
    alice_fp: String,
}

/// alice (member of ops, with a key), bob (owner of ops, not a member), carol (unrelated);
/// web1 in server group web, db1 alone; ops holds a grant on web as `deploy`.
async fn team() -> Team {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    let bob = app.user_with_token("bob", Role::Member).await;
    let carol = app.user_with_token("carol", Role::Member).await;
    let key = common::generated_ed25519_keys(1).remove(0);
    let added = ok(
        app.post(&alice, "/api/v1/users/alice/keys", json!({ "key": key })),
        201,
    )
    .await;
    let admin = &app.admin;
    for server in ["web1", "db1"] {
        ok(
            app.post(admin, "/api/v1/servers", json!({ "name": server })),
            201,
        )
        .await;
    }
    ok(
        app.post(
            admin,
            "/api/v1/groups",
            json!({ "name": "ops", "owners": ["bob"] }),
        ),
        201,
    )
    .await;
    ok(
        app.put(admin, "/api/v1/groups/ops/members/alice", json!(null)),
        200,
    )
    .await;
    ok(
        app.post(admin, "/api/v1/server-groups", json!({ "name": "web" })),
        201,
    )
    .await;
    ok(
        app.put(admin, "/api/v1/server-groups/web/servers/web1", json!(null)),
        200,
    )
    .await;
    ok(
        app.post(
            admin,
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "login": "deploy" }),
        ),
        201,
    )
    .await;
    Team {
        alice_fp: added["fingerprint_sha256"].as_str().unwrap().to_owned(),
        app,
        alice,
        bob,
        carol,
    }
}

async fn root_keys_on(app: &TestApp, server: &str) -> String {
    let res = app
        .get(
            &app.admin,
            &format!("/api/v1/servers/{server}/authorized_keys?login=root"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.text().await.unwrap()
}

#[tokio::test]
async fn an_owner_approves_a_members_request_and_the_grant_ends_by_itself() {
    let t = team().await;
    let app = &t.app;
    let request = ok(
        app.post(&t.alice, "/api/v1/access-requests", json!({ "server": "web1", "login": "root", "duration_hours": 4, "reason": "incident 42" })),
        201,
    )
    .await;
    assert_eq!(request["status"], "pending");
    assert_eq!(request["can_decide"], false, "not her own");
    let id = request["id"].as_str().unwrap().to_owned();
    let approve = |token: &str, comment: &str| {
        app.post(
            token,
            &format!("/api/v1/access-requests/{id}/approve"),
            json!({ "comment": comment }),
        )
    };

    // Nobody approves their own request; carol cannot even see it.
    let (status, problem) = answer(approve(&t.alice, "me")).await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(answer(approve(&t.carol, "me")).await.0, 404);
    assert_eq!(
        ok(app.get(&t.carol, "/api/v1/access-requests"), 200).await,
        json!([])
    );
    assert!(root_keys_on(app, "web1").await.is_empty());

    // bob owns ops, which holds a grant on web (holding web1): it is in his inbox.
    let inbox = ok(
        app.get(&t.bob, "/api/v1/access-requests?status=pending"),
        200,
    )
    .await;
    assert_eq!(inbox.as_array().unwrap().len(), 1);
    assert_eq!(inbox[0]["can_decide"], true);
    let before = OffsetDateTime::now_utc();
    let decided = ok(approve(&t.bob, "go ahead"), 200).await;
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["decided_by"], "bob");
    assert_eq!(decided["comment"], "go ahead");
    let text = root_keys_on(app, "web1").await;
    assert_eq!(text.lines().count(), 1, "{text}");
    let grants = ok(
        app.get(&app.admin, "/api/v1/servers/web1/grants?username=alice"),
        200,
    )
    .await;
    let grant = &grants["items"][0];
    assert_eq!(grant["id"], decided["grant_id"]);
    let ends = OffsetDateTime::parse(
        grant["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let four_hours = time::Duration::hours(4);
    assert!(
        ends >= before + four_hours - time::Duration::seconds(1)
            && ends <= OffsetDateTime::now_utc() + four_hours,
        "{grant}"
    );
    // The key is in; the access review says through which grant.
    let access = ok(app.get(&app.admin, "/api/v1/users/alice/access"), 200).await;
    assert!(access
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["login"] == "root"
            && r["fingerprint_sha256"] == t.alice_fp.as_str()
            && r["grant_id"] == decided["grant_id"]));

    // Decided once: a second decision is a conflict and changes nothing.
    let (status, problem) = answer(approve(&app.admin, "again")).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("request_closed"))
    );

    // The trail has every step.
    let audit = ok(app.get(&app.admin, "/api/v1/audit?limit=100"), 200).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["access_request.create", "access_request.approve"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn requests_outside_an_owners_groups_go_to_admins_and_undecided_ones_lapse() {
    let t = team().await;
    let app = &t.app;
    // db1 is in no server group of ops: bob may not decide, an admin may.
    let db1 = ok(
        app.post(
            &t.alice,
            "/api/v1/access-requests",
            json!({ "server": "db1", "login": "root", "duration_hours": 1, "reason": "restore" }),
        ),
        201,
    )
    .await;
    let db1_id = db1["id"].as_str().unwrap();
    assert_eq!(
        answer(app.post(
            &t.bob,
            &format!("/api/v1/access-requests/{db1_id}/approve"),
            json!({})
        ))
        .await
        .0,
        404
    );
    let denied = ok(
        app.post(
            &app.admin,
            &format!("/api/v1/access-requests/{db1_id}/deny"),
            json!({ "comment": "use the runbook" }),
        ),
        200,
    )
    .await;
    assert_eq!(
        (denied["status"].as_str(), denied["grant_id"].is_null()),
        (Some("denied"), true)
    );
    assert!(root_keys_on(app, "db1").await.is_empty());

    // A request nobody decides lapses after the policy's pending hours (moved into the past
    // here instead of waiting).
    let web = ok(
        app.post(&t.alice, "/api/v1/access-requests", json!({ "server_group": "web", "login": "root", "duration_hours": 2, "reason": "deploy" })),
        201,
    )
    .await;
    let web_id = web["id"].as_str().unwrap();
    sqlx::query(
        "UPDATE access_requests SET lapses_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(web_id)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let mine = ok(
        app.get(&t.alice, "/api/v1/access-requests?status=expired"),
        200,
    )
    .await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["id"], web["id"]);
    let (status, problem) = answer(app.post(
        &app.admin,
        &format!("/api/v1/access-requests/{web_id}/approve"),
        json!({}),
    ))
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("request_closed"))
    );
    assert!(root_keys_on(app, "web1").await.is_empty());

    // An admin's own request needs another admin.
    let own = ok(
        app.post(
            &app.admin,
            "/api/v1/access-requests",
            json!({ "server": "web1", "login": "root", "duration_hours": 1, "reason": "mine" }),
        ),
        201,
    )
    .await;
    let own_id = own["id"].as_str().unwrap();
    assert_eq!(
        answer(app.post(
            &app.admin,
            &format!("/api/v1/access-requests/{own_id}/approve"),
            json!({})
        ))
        .await
        .0,
        403
    );
}

#[tokio::test]
async fn bad_requests_get_a_precise_error_and_change_nothing() {
    let t = team().await;
    let app = &t.app;
    let before = common::data_counts(&app.db.pool).await;
    let cases = [
        json!({ "server": "web1", "login": "root", "duration_hours": 169, "reason": "long" }),
        json!({ "server": "web1", "login": "root", "duration_hours": 0, "reason": "none" }),
        json!({ "server": "web1", "server_group": "web", "login": "root", "duration_hours": 1, "reason": "both" }),
        json!({ "login": "root", "duration_hours": 1, "reason": "neither" }),
        json!({ "server": "nowhere", "login": "root", "duration_hours": 1, "reason": "x" }),
        json!({ "server": "web1", "login": "Root!", "duration_hours": 1, "reason": "x" }),
        json!({ "server": "web1", "login": "root", "duration_hours": 1, "reason": "" }),
        json!({ "server": "web1", "login": "root", "duration_hours": 1, "reason": "a\u{7}b" }),
    ];
    for body in cases {
        let (status, problem) =
            answer(app.post(&t.alice, "/api/v1/access-requests", body.clone())).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("invalid_field")),
            "{body}: {problem}"
        );
    }
    assert_eq!(
        answer(app.get(&t.alice, "/api/v1/access-requests?status=lost"))
            .await
            .0,
        422
    );
    assert_eq!(
        answer(app.post(
            &app.admin,
            "/api/v1/access-requests/not-a-uuid/approve",
            json!({})
        ))
        .await
        .0,
        404
    );
    assert_eq!(
        common::data_counts(&app.db.pool).await,
        before,
        "refused input changed nothing"
    );
    // The policy bounds the duration: raised, the long request goes through.
    let policy = ok(app.get(&app.admin, "/api/v1/policy"), 200).await;
    let mut raised = policy.clone();
    raised["max_access_request_hours"] = json!(200);
    ok(app.put(&app.admin, "/api/v1/policy", raised), 200).await;
    ok(
        app.post(
            &t.alice,
            "/api/v1/access-requests",
            json!({ "server": "web1", "login": "root", "duration_hours": 169, "reason": "long" }),
        ),
        201,
    )
    .await;
}

#[tokio::test]
async fn an_approval_lengthens_an_existing_grant_and_never_shortens_one() {
    let t = team().await;
    let app = &t.app;
    // alice already holds root on web1 until one hour from now, and deploy on web1 for good.
    let soon = (OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let short = ok(
        app.post(
            &app.admin,
            "/api/v1/servers/web1/grants",
            json!({ "username": "alice", "login": "root", "expires_at": soon }),
        ),
        201,
    )
    .await;
    let forever = ok(
        app.post(
            &app.admin,
            "/api/v1/servers/web1/grants",
            json!({ "username": "alice", "login": "deploy" }),
        ),
        201,
    )
    .await;
    for (login, existing) in [("root", &short), ("deploy", &forever)] {
        let request = ok(
            app.post(&t.alice, "/api/v1/access-requests", json!({ "server": "web1", "login": login, "duration_hours": 4, "reason": "maintenance" })),
            201,
        )
        .await;
        let id = request["id"].as_str().unwrap();
        let decided = ok(
            app.post(
                &t.bob,
                &format!("/api/v1/access-requests/{id}/approve"),
                json!({}),
            ),
            200,
        )
        .await;
        assert_eq!(
            decided["grant_id"], existing["id"],
            "{login}: the same grant, not a second one"
        );
    }
    let grants = ok(
        app.get(&app.admin, "/api/v1/servers/web1/grants?username=alice"),
        200,
    )
    .await;
    let items = grants["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let ends =
        |login: &str| items.iter().find(|g| g["login"] == login).unwrap()["expires_at"].clone();
    let root_ends = OffsetDateTime::parse(
        ends("root").as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        root_ends > OffsetDateTime::now_utc() + time::Duration::minutes(230),
        "lengthened to 4 h: {root_ends}"
    );
    assert_eq!(
        ends("deploy"),
        Value::Null,
        "a grant without an end keeps none"
    );
}
