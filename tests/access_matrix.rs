//! Who may do what, over real HTTP: every route of the API contract against nine callers.
//! Each row gets a fresh database. Refusals and reads share it, since a refusal must change
//! nothing; each successful write after the first gets a fresh database of its own, so one
//! cell's change (a delete, say) cannot decide another's answer.

mod common;

use common::TestApp;
use keyportal::domain::Role;
use keyportal::service::grants::NewGrant;
use keyportal::service::groups::NewGroup;
use keyportal::service::Ctx;
use keyportal::store::groups::Kind;
use reqwest::Method;
use serde_json::{json, Value};

/// The callers, in the order of each row's expected statuses.
const CALLERS: [&str; 9] = [
    "anonymous",
    "member A",
    "member B",
    "admin",
    "server token S1",
    "server token S2",
    "revoked token",
    "expired token",
    "disabled user",
];

/// A small world: alice (member A) holds key K and grant G (login deploy) on web1; bob is
/// member B; db1 is a second server.
struct World {
    app: TestApp,
    tokens: Vec<Option<String>>,
    key_id: String,
    grant_id: String,
    alice_token_id: String,
    /// A spare server token of web1, for the revocation route.
    server_token_id: String,
    request_id: String,
    policy: Value,
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let cli = Ctx::command_line();
    let s = &app.services;
    let alice = app.user_with_token("alice", Role::Member).await;
    let bob = app.user_with_token("bob", Role::Member).await;
    let dave = app.user_with_token("dave", Role::Member).await;
    let key = s
        .add_key(
            &cli,
            "alice",
            common::corpus_key("valid/ecdsa-256.pub").as_bytes(),
            Some("laptop"),
            None,
        )
        .await
        .unwrap();
    for server in ["web1", "db1"] {
        s.create_server(&cli, server, None, None).await.unwrap();
    }
    let grant = s
        .create_grant(
            &cli,
            "web1",
            NewGrant {
                username: "alice".into(),
                login: "deploy".into(),
                key_id: None,
                options: None,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    // Teams: alice owns and is in user group ops; web1 is in server group web.
    let ops = NewGroup {
        name: "ops".into(),
        owners: Some(vec!["alice".into()]),
        ..Default::default()
    };
    s.create_group(&cli, Kind::Users, ops).await.unwrap();
    s.set_group_member(&cli, Kind::Users, "ops", "alice", true)
        .await
        .unwrap();
    let web = NewGroup {
        name: "web".into(),
        ..Default::default()
    };
    s.create_group(&cli, Kind::Servers, web).await.unwrap();
    s.set_group_member(&cli, Kind::Servers, "web", "web1", true)
        .await
        .unwrap();
    // bob asks for root on db1; alice (no group of his) may not decide it.
    let request_id: String = sqlx::query_scalar(
        "INSERT INTO access_requests (requester_id, server_id, login, duration_hours, reason, lapses_at)
         SELECT u.id, s.id, 'root', 1, 'maintenance', now() + interval '1 day'
           FROM users u, servers s WHERE u.username = 'bob' AND s.name = 'db1' RETURNING id::text",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let s1 = s
        .create_server_token(&cli, "web1", None, None)
        .await
        .unwrap()
        .secret;
    let s2 = s
        .create_server_token(&cli, "db1", None, None)
        .await
        .unwrap()
        .secret;
    let spare = s
        .create_server_token(&cli, "web1", Some("spare"), None)
        .await
        .unwrap();
    let alice_token_id: String = sqlx::query_scalar(
        "SELECT t.id::text FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.username = 'alice'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let revoked = s
        .create_token_for(&cli, "alice", "old", None)
        .await
        .unwrap();
    sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1")
        .bind(revoked.token.id)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let expired = s
        .create_token_for(&cli, "alice", "short", None)
        .await
        .unwrap();
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(expired.token.id)
        .execute(&app.db.pool)
        .await
        .unwrap();
    s.update_user(
        &cli,
        "dave",
        keyportal::service::users::UserPatch {
            disabled: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let policy = serde_json::to_value(s.policy(&cli).await.unwrap()).unwrap();
    let admin = app.admin.clone();
    World {
        tokens: vec![
            None,
            Some(alice),
            Some(bob),
            Some(admin),
            Some(s1),
            Some(s2),
            Some(revoked.secret),
            Some(expired.secret),
            Some(dave),
        ],
        key_id: key.id.to_string(),
        grant_id: grant.id.to_string(),
        alice_token_id,
        server_token_id: spare.token.id.to_string(),
        request_id,
        policy,
        app,
    }
}

enum Body {
    None,
    Json(fn(&World) -> Value),
    Text(&'static str),
}

struct Route {
    method: Method,
    path: &'static str,
    body: Body,
    /// Expected status per caller, in the order of [`CALLERS`].
    expect: [u16; 9],
}

fn route(method: Method, path: &'static str, body: Body, expect: [u16; 9]) -> Route {
    Route {
        method,
        path,
        body,
        expect,
    }
}

fn routes() -> Vec<Route> {
    use Body::{Json, None as NoBody, Text};
    use Method as M;
    const U: u16 = 401;
    vec![
        route(
            M::GET,
            "/api/v1/me",
            NoBody,
            [U, 200, 200, 200, 200, 200, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/users",
            NoBody,
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/users",
            Json(|_| json!({"username": "newbie"})),
            [U, 403, 403, 201, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/users/alice",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::PATCH,
            "/api/v1/users/alice",
            Json(|_| json!({"display_name": "Alice"})),
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::PATCH,
            "/api/v1/users/alice",
            Json(|_| json!({"role": "admin"})),
            [U, 403, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/users/alice",
            NoBody,
            [U, 403, 403, 204, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/users/alice/keys",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/users/alice/keys",
            Json(|_| json!({"key": common::corpus_key("valid/ed25519.pub")})),
            [U, 201, 404, 201, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/users/alice/keys/import",
            Text("# nothing to add\n"),
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/keys/validate",
            Json(|_| json!({"key": common::corpus_key("valid/ed25519.pub")})),
            [U, 200, 200, 200, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/keys/{key}",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/keys/{key}",
            NoBody,
            [U, 204, 404, 204, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/servers",
            NoBody,
            [U, 200, 200, 200, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/servers",
            Json(|_| json!({"name": "new1"})),
            [U, 403, 403, 201, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/servers/web1",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/servers/db1",
            NoBody,
            [U, 404, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::PATCH,
            "/api/v1/servers/web1",
            Json(|_| json!({"description": "x"})),
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/servers/web1",
            NoBody,
            [U, 403, 403, 204, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/servers/web1/grants",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/servers/web1/grants",
            Json(|_| json!({"username": "bob", "login": "deploy"})),
            [U, 403, 403, 201, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/servers/web1/authorized_keys?login=deploy",
            NoBody,
            [U, 404, 404, 200, 200, 404, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/servers/web1/tokens",
            Json(|_| json!({})),
            [U, 403, 403, 201, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/grants/{grant}",
            NoBody,
            [U, 403, 403, 204, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/policy",
            NoBody,
            [U, 200, 200, 200, 403, 403, U, U, U],
        ),
        route(
            M::PUT,
            "/api/v1/policy",
            Json(|w| w.policy.clone()),
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/audit",
            NoBody,
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/tokens",
            NoBody,
            [U, 200, 200, 200, 403, 403, U, U, U],
        ),
        // A token never mints tokens: that needs a browser session or the CLI.
        route(
            M::POST,
            "/api/v1/tokens",
            Json(|_| json!({"name": "ci"})),
            [U, 403, 403, 403, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/servers/web1/tokens",
            NoBody,
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/servers/web1/tokens/{server_token}",
            NoBody,
            [U, 403, 403, 204, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/users/alice/tokens",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/users/alice/tokens/{alice_token}",
            NoBody,
            [U, 204, 404, 204, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/tokens/{alice_token}",
            NoBody,
            [U, 204, 404, 404, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/groups",
            NoBody,
            [U, 200, 200, 200, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/groups",
            Json(|_| json!({"name": "dba", "owners": ["bob"]})),
            [U, 403, 403, 201, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/groups/ops",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::PATCH,
            "/api/v1/groups/ops",
            Json(|_| json!({"description": "on call"})),
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/groups/ops",
            NoBody,
            [U, 403, 403, 204, 403, 403, U, U, U],
        ),
        route(
            M::PUT,
            "/api/v1/groups/ops/members/bob",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/groups/ops/members/alice",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/server-groups",
            NoBody,
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/server-groups",
            Json(|_| json!({"name": "db"})),
            [U, 403, 403, 201, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/server-groups/web",
            NoBody,
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::PATCH,
            "/api/v1/server-groups/web",
            Json(|_| json!({"description": "front ends"})),
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/server-groups/web",
            NoBody,
            [U, 403, 403, 204, 403, 403, U, U, U],
        ),
        route(
            M::PUT,
            "/api/v1/server-groups/web/servers/db1",
            NoBody,
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::DELETE,
            "/api/v1/server-groups/web/servers/web1",
            NoBody,
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/server-groups/web/grants",
            Json(|_| json!({"group": "ops", "login": "deploy"})),
            [U, 403, 403, 201, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/servers/web1/access",
            NoBody,
            [U, 403, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/users/alice/access?format=csv",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/access-requests",
            NoBody,
            [U, 200, 200, 200, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/access-requests",
            Json(
                |_| json!({"server": "web1", "login": "root", "duration_hours": 2, "reason": "incident 42"}),
            ),
            [U, 201, 201, 201, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/access-requests/{request}/approve",
            Json(|_| json!({"comment": "ok"})),
            [U, 404, 403, 200, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/access-requests/{request}/deny",
            Json(|_| json!({})),
            [U, 404, 403, 200, 403, 403, U, U, U],
        ),
        // No identity provider in this world: admins learn that (404), others are refused first.
        route(
            M::POST,
            "/api/v1/oidc/sync",
            NoBody,
            [U, 403, 403, 404, 403, 403, U, U, U],
        ),
        // Certificates: the key's owner and admins issue; servers read principals (their own)
        // and the KRL (any server); the CAs' public keys are public.
        route(
            M::POST,
            "/api/v1/keys/{key}/certificate",
            Json(|_| json!({})),
            [U, 201, 404, 201, 403, 403, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/certificates",
            Json(|_| {
                let key = common::corpus_key("valid/ecdsa-256.pub");
                let fp = keyportal::keys::validate(key.as_bytes(), &Default::default())
                    .unwrap()
                    .fingerprint_sha256()
                    .to_owned();
                json!({ "fingerprint": fp })
            }),
            [U, 201, 404, 201, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/keys/{key}/certificates",
            NoBody,
            [U, 200, 404, 200, 403, 403, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/servers/web1/principals?login=deploy&key_id=keyportal:alice:x:1&serial=1",
            NoBody,
            [U, 404, 404, 200, 200, 404, U, U, U],
        ),
        route(
            M::POST,
            "/api/v1/servers/web1/host-certificate",
            Json(|_| json!({ "host_keys": [common::corpus_key("valid/ed25519.pub").trim()] })),
            [U, 404, 404, 201, 201, 404, U, U, U],
        ),
        route(
            M::GET,
            "/api/v1/ca/krl",
            NoBody,
            [U, 403, 403, 200, 200, 200, U, U, U],
        ),
        route(M::GET, "/api/v1/ca/user", NoBody, [200; 9]),
        route(M::GET, "/api/v1/ca/known_hosts", NoBody, [200; 9]),
        route(M::GET, "/api/openapi.json", NoBody, [200; 9]),
        route(M::GET, "/healthz", NoBody, [200; 9]),
    ]
}

async fn cell(w: &World, route: &Route, caller: usize) -> Result<(), String> {
    let path = route
        .path
        .replace("{key}", &w.key_id)
        .replace("{grant}", &w.grant_id)
        .replace("{alice_token}", &w.alice_token_id)
        .replace("{server_token}", &w.server_token_id)
        .replace("{request}", &w.request_id);
    let mut req = w.app.client.request(route.method.clone(), w.app.url(&path));
    if let Some(token) = &w.tokens[caller] {
        req = req.bearer_auth(token);
    }
    req = match &route.body {
        Body::None => req,
        Body::Json(f) => req.json(&f(w)),
        Body::Text(t) => req.header("content-type", "text/plain").body(*t),
    };
    let (status, body) = common::answer(req).await;
    let expected = route.expect[caller];
    if status == expected {
        Ok(())
    } else {
        Err(format!(
            "{} {} as {}: expected {expected}, got {status}: {body}",
            route.method, route.path, CALLERS[caller]
        ))
    }
}

/// One row: refusals (which must change nothing) and reads share a world; each successful
/// write after the first gets a fresh one.
async fn row(route: &Route) -> Vec<String> {
    let shared = world().await;
    let writes = route.method != Method::GET;
    let (succeed, refused): (Vec<usize>, Vec<usize>) =
        (0..CALLERS.len()).partition(|&c| writes && route.expect[c] < 300);
    let mut results =
        futures_util::future::join_all(refused.iter().map(|&c| cell(&shared, route, c))).await;
    for (i, &c) in succeed.iter().enumerate() {
        if i == 0 {
            results.push(cell(&shared, route, c).await);
        } else {
            results.push(cell(&world().await, route, c).await);
        }
    }
    results.into_iter().filter_map(Result::err).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_answers_every_caller_as_the_contract_says() {
    let routes = routes();
    let rows = futures_util::future::join_all(routes.iter().map(row)).await;
    let failures: Vec<String> = rows.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "{} of {} cells differ:\n{}",
        failures.len(),
        routes.len() * CALLERS.len(),
        failures.join("\n")
    );
}
