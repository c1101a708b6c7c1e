//! Teams (issue 16): user groups, server groups and grants to them, over real HTTP and a real
//! PostgreSQL. What an admin checks: who reaches which server, once, with which options, and
//! that a membership change counts at the very next read.

mod common;

use std::collections::BTreeMap;

use common::{answer, TestApp};
use keyportal::domain::Role;
use serde_json::{json, Value};

/// Each key line of an authorized_keys text, by its SHA256 fingerprint, with its options.
fn lines(text: &str) -> BTreeMap<String, String> {
    keyportal::keys::validate_authorized_keys(text.as_bytes(), &keyportal::keys::Policy::default())
        .expect("no private key")
        .into_iter()
        .map(|v| {
            let key = v.result.expect("every line is a valid key line");
            (
                key.fingerprint_sha256().to_owned(),
                key.options().to_string(),
            )
        })
        .collect()
}

async fn authorized_keys(app: &TestApp, server: &str, login: &str, fp: Option<&str>) -> String {
    let mut path = format!("/api/v1/servers/{server}/authorized_keys?login={login}");
    if let Some(fp) = fp {
        path.push_str(&format!("&fingerprint={}", fp.replace('+', "%2B")));
    }
    let res = app.get(&app.admin, &path).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200, "{path}");
    res.text().await.unwrap()
}

/// A member with one generated Ed25519 key; its fingerprint.
async fn member_with_key(app: &TestApp, name: &str, key: &str) -> String {
    let token = app.user_with_token(name, Role::Member).await;
    let (status, body) = answer(app.post(
        &token,
        &format!("/api/v1/users/{name}/keys"),
        json!({ "key": key }),
    ))
    .await;
    assert_eq!(status, 201, "{body}");
    body["fingerprint_sha256"].as_str().unwrap().to_owned()
}

async fn ok(req: reqwest::RequestBuilder, want: u16) -> Value {
    let (status, body) = answer(req).await;
    assert_eq!(status, want, "{body}");
    body
}

/// alice, bob, carol with a key each; servers web1, web2, db1; user group ops = {alice, bob};
/// server group web = {web1, web2}.
async fn team(app: &TestApp) -> [String; 3] {
    let keys = common::generated_ed25519_keys(3);
    let fps = [
        member_with_key(app, "alice", &keys[0]).await,
        member_with_key(app, "bob", &keys[1]).await,
        member_with_key(app, "carol", &keys[2]).await,
    ];
    for server in ["web1", "web2", "db1"] {
        ok(
            app.post(&app.admin, "/api/v1/servers", json!({ "name": server })),
            201,
        )
        .await;
    }
    ok(
        app.post(
            &app.admin,
            "/api/v1/groups",
            json!({ "name": "ops", "description": "on call" }),
        ),
        201,
    )
    .await;
    for user in ["alice", "bob"] {
        ok(
            app.put(
                &app.admin,
                &format!("/api/v1/groups/ops/members/{user}"),
                json!(null),
            ),
            200,
        )
        .await;
    }
    ok(
        app.post(
            &app.admin,
            "/api/v1/server-groups",
            json!({ "name": "web" }),
        ),
        201,
    )
    .await;
    for server in ["web1", "web2"] {
        ok(
            app.put(
                &app.admin,
                &format!("/api/v1/server-groups/web/servers/{server}"),
                json!(null),
            ),
            200,
        )
        .await;
    }
    fps
}

#[tokio::test]
async fn a_group_grant_reaches_every_member_on_every_server_of_the_group_until_membership_changes()
{
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = team(&app).await;
    let grant = ok(
        app.post(
            &app.admin,
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "login": "deploy" }),
        ),
        201,
    )
    .await;
    assert_eq!(grant["group"], "ops");
    assert_eq!(grant["server_group"], "web");

    for server in ["web1", "web2"] {
        let text = authorized_keys(&app, server, "deploy", None).await;
        assert_eq!(
            lines(&text).into_keys().collect::<Vec<_>>(),
            sorted([&alice, &bob]),
            "{server}"
        );
        // The login path by fingerprint answers the same.
        assert_eq!(
            lines(&authorized_keys(&app, server, "deploy", Some(&alice)).await).len(),
            1
        );
        assert!(authorized_keys(&app, server, "deploy", Some(&carol))
            .await
            .is_empty());
    }
    assert!(authorized_keys(&app, "db1", "deploy", None)
        .await
        .is_empty());
    assert!(authorized_keys(&app, "web1", "root", None).await.is_empty());

    // alice leaves ops: gone at the next read, on both paths; bob stays.
    let group = ok(
        app.delete(&app.admin, "/api/v1/groups/ops/members/alice"),
        200,
    )
    .await;
    assert_eq!(group["members"], json!(["bob"]));
    let text = authorized_keys(&app, "web1", "deploy", None).await;
    assert_eq!(lines(&text).into_keys().collect::<Vec<_>>(), sorted([&bob]));
    assert!(authorized_keys(&app, "web1", "deploy", Some(&alice))
        .await
        .is_empty());

    // web2 leaves web: nobody reaches it any more; web1 is unchanged.
    ok(
        app.delete(&app.admin, "/api/v1/server-groups/web/servers/web2"),
        200,
    )
    .await;
    assert!(authorized_keys(&app, "web2", "deploy", None)
        .await
        .is_empty());
    assert_eq!(
        lines(&authorized_keys(&app, "web1", "deploy", None).await).len(),
        1
    );

    // Deleting the user group deletes its grants.
    ok(app.delete(&app.admin, "/api/v1/groups/ops"), 204).await;
    assert!(authorized_keys(&app, "web1", "deploy", None)
        .await
        .is_empty());
    let (status, _) = answer(app.get(&app.admin, "/api/v1/groups/ops")).await;
    assert_eq!(status, 404);
}

fn sorted<const N: usize>(fps: [&String; N]) -> Vec<String> {
    let mut v: Vec<String> = fps.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_key_reached_by_several_grants_is_written_once_with_the_most_specific_grants_options() {
    let app = TestApp::spawn().await;
    let [alice, _, _] = team(&app).await;
    let post = |path: &str, body: Value| app.post(&app.admin, path, body);
    // Least to most specific: group on server group, group on server, user on server group,
    // user on server.
    let g4 = ok(
        post(
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "login": "deploy", "options": "no-pty" }),
        ),
        201,
    )
    .await;
    let g3 = ok(
        post(
            "/api/v1/servers/web1/grants",
            json!({ "group": "ops", "login": "deploy", "options": "no-agent-forwarding" }),
        ),
        201,
    )
    .await;
    let g2 = ok(
        post(
            "/api/v1/server-groups/web/grants",
            json!({ "username": "alice", "login": "deploy", "options": "no-port-forwarding" }),
        ),
        201,
    )
    .await;
    let g1 = ok(
        post(
            "/api/v1/servers/web1/grants",
            json!({ "username": "alice", "login": "deploy", "options": "from=\"10.0.0.0/8\"" }),
        ),
        201,
    )
    .await;
    let options_of_alice = || async {
        let text = authorized_keys(&app, "web1", "deploy", None).await;
        let all = lines(&text);
        let by_fp = lines(&authorized_keys(&app, "web1", "deploy", Some(&alice)).await);
        assert_eq!(by_fp.get(&alice), all.get(&alice), "both login paths agree");
        all.get(&alice).cloned()
    };
    assert_eq!(
        options_of_alice().await.as_deref(),
        Some("from=\"10.0.0.0/8\"")
    );
    for (grant, then) in [
        (&g1, "no-port-forwarding"),
        (&g2, "no-agent-forwarding"),
        (&g3, "no-pty"),
    ] {
        let id = grant["id"].as_str().unwrap();
        ok(app.delete(&app.admin, &format!("/api/v1/grants/{id}")), 204).await;
        assert_eq!(options_of_alice().await.as_deref(), Some(then));
    }
    let id = g4["id"].as_str().unwrap();
    ok(app.delete(&app.admin, &format!("/api/v1/grants/{id}")), 204).await;
    assert_eq!(options_of_alice().await, None);
    // Each line once: two members, two lines.
    ok(
        post(
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "login": "deploy" }),
        ),
        201,
    )
    .await;
    ok(
        post(
            "/api/v1/servers/web1/grants",
            json!({ "group": "ops", "login": "deploy" }),
        ),
        201,
    )
    .await;
    assert_eq!(
        authorized_keys(&app, "web1", "deploy", None)
            .await
            .lines()
            .count(),
        2
    );
}

#[tokio::test]
async fn owners_change_members_and_nobody_else_but_admins_does() {
    let app = TestApp::spawn().await;
    team(&app).await;
    let bob = app.user_with_token("bob2", Role::Member).await;
    let dave = app.user_with_token("dave", Role::Member).await;
    ok(
        app.patch(
            &app.admin,
            "/api/v1/groups/ops",
            json!({ "owners": ["bob2"] }),
        ),
        200,
    )
    .await;

    // The owner (not a member) adds dave; dave, now a member but no owner, may not add more.
    let group = ok(
        app.put(&bob, "/api/v1/groups/ops/members/dave", json!(null)),
        200,
    )
    .await;
    assert_eq!(group["members"], json!(["alice", "bob", "dave"]));
    assert_eq!(group["owners"], json!(["bob2"]));
    let (status, body) =
        answer(app.put(&dave, "/api/v1/groups/ops/members/carol", json!(null))).await;
    assert_eq!(status, 403, "{body}");
    // Members see their groups; others do not learn they exist.
    let listed = ok(app.get(&dave, "/api/v1/groups"), 200).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let carol = app.user_with_token("erin", Role::Member).await;
    assert_eq!(answer(app.get(&carol, "/api/v1/groups/ops")).await.0, 404);
    assert_eq!(ok(app.get(&carol, "/api/v1/groups"), 200).await, json!([]));
    // Creating groups and granting are for admins.
    assert_eq!(
        answer(app.post(&bob, "/api/v1/groups", json!({ "name": "mine" })))
            .await
            .0,
        403
    );
    assert_eq!(
        answer(app.post(
            &bob,
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "login": "root" })
        ))
        .await
        .0,
        403
    );

    // Every step is in the audit trail.
    let audit = ok(app.get(&app.admin, "/api/v1/audit?limit=100"), 200).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["group.create", "group.update", "group.member_add"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn bad_group_input_gets_a_precise_error_and_changes_nothing() {
    let app = TestApp::spawn().await;
    team(&app).await;
    let before = common::data_counts(&app.db.pool).await;
    let cases = [
        (
            "/api/v1/groups",
            json!({ "name": "Ops Team" }),
            422,
            "invalid_field",
        ),
        (
            "/api/v1/groups",
            json!({ "name": "ops" }),
            409,
            "group_exists",
        ),
        (
            "/api/v1/server-groups",
            json!({ "name": "web" }),
            409,
            "group_exists",
        ),
        (
            "/api/v1/server-groups",
            json!({ "name": "db", "owners": ["alice"] }),
            422,
            "invalid_field",
        ),
        (
            "/api/v1/groups",
            json!({ "name": "x", "owners": ["nobody"] }),
            422,
            "invalid_field",
        ),
        (
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "username": "alice", "login": "deploy" }),
            422,
            "invalid_field",
        ),
        (
            "/api/v1/server-groups/web/grants",
            json!({ "login": "deploy" }),
            422,
            "invalid_field",
        ),
        (
            "/api/v1/server-groups/web/grants",
            json!({ "group": "nope", "login": "deploy" }),
            422,
            "invalid_field",
        ),
        (
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "login": "Root" }),
            422,
            "invalid_field",
        ),
        (
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "login": "deploy", "options": "bogus-option" }),
            422,
            "options_invalid",
        ),
        (
            "/api/v1/server-groups/nope/grants",
            json!({ "group": "ops", "login": "deploy" }),
            404,
            "not_found",
        ),
        (
            "/api/v1/servers/web1/grants",
            json!({ "group": "ops", "login": "deploy", "key_id": "0190a0e0-0000-7000-8000-000000000000" }),
            422,
            "invalid_field",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, problem) = answer(app.post(&app.admin, path, body.clone())).await;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{path} {body}: {problem}"
        );
    }
    assert_eq!(
        common::data_counts(&app.db.pool).await,
        before,
        "refused input changed nothing"
    );
    // A grant twice is a conflict.
    ok(
        app.post(
            &app.admin,
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "login": "deploy" }),
        ),
        201,
    )
    .await;
    let (status, problem) = answer(app.post(
        &app.admin,
        "/api/v1/server-groups/web/grants",
        json!({ "group": "ops", "login": "deploy" }),
    ))
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("grant_exists"))
    );
    // Members of unknown groups and servers: 404, nothing added.
    assert_eq!(
        answer(app.put(&app.admin, "/api/v1/groups/ops/members/nobody", json!(null)))
            .await
            .0,
        404
    );
    assert_eq!(
        answer(app.put(
            &app.admin,
            "/api/v1/server-groups/web/servers/nowhere",
            json!(null)
        ))
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn access_reviews_say_who_gets_in_where_and_through_which_grant() {
    let app = TestApp::spawn().await;
    let [alice, bob, _] = team(&app).await;
    let group_grant = ok(
        app.post(
            &app.admin,
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "login": "deploy", "options": "no-pty" }),
        ),
        201,
    )
    .await;
    let direct = ok(
        app.post(
            &app.admin,
            "/api/v1/servers/web1/grants",
            json!({ "username": "alice", "login": "deploy", "options": "from=\"10.0.0.0/8\"" }),
        ),
        201,
    )
    .await;
    // bob's key turns out to be compromised: still listed (someone granted it), never valid.
    ok(
        app.post(
            &app.admin,
            "/api/v1/blocklist",
            json!({ "fingerprint": bob, "reason": "laptop stolen" }),
        ),
        201,
    )
    .await;

    let rows = ok(app.get(&app.admin, "/api/v1/servers/web1/access"), 200).await;
    let summary: Vec<Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!([
                r["username"],
                r["login"],
                r["fingerprint_sha256"],
                r["options"],
                r["valid"],
                r["problem"],
                r["grant_id"],
                r["group"],
                r["server_group"]
            ])
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            json!([
                "alice",
                "deploy",
                alice,
                "from=\"10.0.0.0/8\"",
                true,
                null,
                direct["id"],
                null,
                null
            ]),
            json!([
                "bob",
                "deploy",
                bob,
                "no-pty",
                false,
                "key_compromised",
                group_grant["id"],
                "ops",
                "web"
            ]),
        ]
    );
    // Where bob gets in: both servers of web, through ops.
    let rows = ok(app.get(&app.admin, "/api/v1/users/bob/access"), 200).await;
    let servers: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers, ["web1", "web2"]);

    // The CSV export, for a spreadsheet: a header, one quoted line per row.
    let res = app
        .get(&app.admin, "/api/v1/servers/web1/access?format=csv")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], keyportal::service::effective_access::CSV_HEADER);
    assert!(
        lines[1].starts_with("\"web1\",\"deploy\",\"alice\","),
        "{csv}"
    );
    assert!(
        lines[1].contains("\"from=\"\"10.0.0.0/8\"\"\""),
        "quotes doubled: {csv}"
    );
    assert!(lines[2].contains("\"false\",\"key_compromised\""), "{csv}");
    assert_eq!(lines.len(), 4, "two rows and the final line break: {csv}");

    // Members review their own access only; servers' access is for admins.
    let bob_token = {
        let cli = keyportal::service::Ctx::command_line();
        app.services
            .create_token_for(&cli, "bob", "review", None)
            .await
            .unwrap()
            .secret
    };
    assert_eq!(
        answer(app.get(&bob_token, "/api/v1/users/bob/access"))
            .await
            .0,
        200
    );
    assert_eq!(
        answer(app.get(&bob_token, "/api/v1/users/alice/access"))
            .await
            .0,
        404
    );
    assert_eq!(
        answer(app.get(&bob_token, "/api/v1/servers/web1/access"))
            .await
            .0,
        403
    );
    assert_eq!(
        answer(app.get(&app.admin, "/api/v1/servers/web1/access?format=xml"))
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn a_group_grant_that_has_expired_reaches_nobody() {
    let app = TestApp::spawn().await;
    let [alice, bob, _] = team(&app).await;
    let grant = ok(
        app.post(
            &app.admin,
            "/api/v1/server-groups/web/grants",
            json!({ "group": "ops", "login": "deploy", "expires_at": "2099-01-01T00:00:00Z" }),
        ),
        201,
    )
    .await;
    assert_eq!(grant["expires_at"], "2099-01-01T00:00:00Z");
    let text = authorized_keys(&app, "web1", "deploy", None).await;
    assert_eq!(
        lines(&text).into_keys().collect::<Vec<_>>(),
        sorted([&alice, &bob])
    );
    // Its end passes (moved here rather than waited for): gone from both login paths.
    sqlx::query("UPDATE group_grants SET expires_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert!(authorized_keys(&app, "web1", "deploy", None)
        .await
        .is_empty());
    assert!(authorized_keys(&app, "web1", "deploy", Some(&alice))
        .await
        .is_empty());
    let rows = ok(app.get(&app.admin, "/api/v1/servers/web1/access"), 200).await;
    assert_eq!(rows, json!([]), "the access review agrees");
    // A grant may not be made already expired.
    let (status, problem) = answer(app.post(
        &app.admin,
        "/api/v1/server-groups/web/grants",
        json!({ "group": "ops", "login": "root", "expires_at": "2001-01-01T00:00:00Z" }),
    ))
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_field")),
        "{problem}"
    );
}
