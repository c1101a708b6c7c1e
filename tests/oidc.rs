//! Sign-in through a real OpenID Provider (panva's oidc-provider, run by `common::idp`):
//! just-in-time accounts, role and group sync, every refusal the flow must make (state, code
//! replay, ID token issuer/audience/expiry/nonce/unknown key), key rotation, session re-checks,
//! `users sync`, sign-out at the provider, and password sign-in turned off.

mod common;

use std::sync::Arc;

use common::browser::Browser;
use common::idp::Idp;
use common::{answer, data_counts, TestApp};
use keyportal::domain::Role;
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

/// A portal configured for a provider started for it.
async fn portal_with_idp() -> (TestApp, Idp) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let idp = Idp::start(&base).await;
    let provider = keyportal::oidc::OidcProvider::new(idp.settings(&base)).unwrap();
    let app = TestApp::spawn_on(listener, |state| {
        state.services.oidc = Some(Arc::new(provider));
    })
    .await;
    (app, idp)
}

/// Starts a sign-in at the portal; the provider's authorization URL.
async fn start(b: &mut Browser) -> String {
    let res = b.get("/auth/oidc/login?next=%2Fkeys").await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(
        res.set_cookie("kp_oidc_state").is_some(),
        "the state is bound to this browser"
    );
    res.location().unwrap().to_owned()
}

/// The callback URL's path and query, for the portal's browser.
fn path_of(url: &str, app: &TestApp) -> String {
    url.strip_prefix(&app.url(""))
        .unwrap_or_else(|| panic!("{url} is not the portal's"))
        .to_owned()
}

async fn actions(app: &TestApp, action: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar(
        "SELECT jsonb_build_object('actor', actor, 'target', target, 'detail', detail)
         FROM audit_events WHERE action = $1 ORDER BY id",
    )
    .bind(action)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

async fn member_of(app: &TestApp, user: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT g.name, g.managed_by FROM user_groups g
         JOIN user_group_members m ON m.group_id = g.id JOIN users u ON u.id = m.user_id
         WHERE u.username = $1 ORDER BY g.name",
    )
    .bind(user)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

/// The value of `name` in a URL's query.
fn query_value(url: &str, name: &str) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
        .to_owned()
}

/// A whole sign-in of `user`; the callback's answer.
async fn sign_in(app: &TestApp, idp: &Idp, b: &mut Browser, user: &str, pass: &str) -> String {
    let authorize = start(b).await;
    let callback = idp.sign_in(b, &authorize, user, pass).await;
    path_of(&callback, app)
}

#[tokio::test]
async fn a_first_sign_in_creates_the_user_with_role_and_groups_from_the_provider() {
    let (app, idp) = portal_with_idp().await;
    // A group managed by hand whose name the provider also sends: left alone.
    let (status, body) = answer(app.post(
        &app.admin,
        "/api/v1/groups",
        json!({ "name": "dev", "description": "by hand" }),
    ))
    .await;
    assert_eq!(status, 201, "{body}");

    let mut b = app.browser();
    let authorize = start(&mut b).await;
    assert!(
        authorize.starts_with(&format!("{}/auth?", idp.issuer)),
        "{authorize}"
    );
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
        "response_type=code",
    ] {
        assert!(authorize.contains(part), "{part} missing from {authorize}");
    }
    let callback = idp.sign_in(&mut b, &authorize, "alice", "alice-pass").await;
    let res = b.get(&path_of(&callback, &app)).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(
        res.location(),
        Some("/keys"),
        "back where the sign-in began"
    );
    assert!(res.set_cookie("kp_session").is_some());
    let page = b.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("alice"), "signed in as alice");

    let (_, alice) = answer(app.get(&app.admin, "/api/v1/users/alice")).await;
    assert_eq!(
        alice["role"], "admin",
        "keyportal-admins at the provider: {alice}"
    );
    assert_eq!(alice["display_name"], "Alice Example");
    assert_eq!(alice["email"], "alice@example.test");
    assert_eq!(
        member_of(&app, "alice").await,
        vec![
            ("keyportal-admins".to_owned(), "provider".to_owned()),
            ("ops".to_owned(), "provider".to_owned())
        ]
    );
    let created = actions(&app, "user.create").await;
    assert_eq!(created.last().unwrap()["detail"]["source"], "oidc");
    assert_eq!(actions(&app, "group.member_add").await.len(), 2);

    // bob is in "dev" at the provider; keyportal's "dev" is managed by hand.
    let mut b2 = app.browser();
    let callback = sign_in(&app, &idp, &mut b2, "bob", "bob-pass").await;
    assert_eq!(b2.get(&callback).await.status, 303);
    assert!(
        member_of(&app, "bob").await.is_empty(),
        "a hand-managed group is left alone"
    );
    let (_, bob) = answer(app.get(&app.admin, "/api/v1/users/bob")).await;
    assert_eq!(bob["role"], "member");

    // The provider moves alice out of the admin group and ops: the next sign-in says so.
    idp.put_account("alice", "alice-pass", &["ops"]).await;
    let mut b3 = app.browser();
    let callback = sign_in(&app, &idp, &mut b3, "alice", "alice-pass").await;
    assert_eq!(b3.get(&callback).await.status, 303);
    let (_, alice) = answer(app.get(&app.admin, "/api/v1/users/alice")).await;
    assert_eq!(alice["role"], "member");
    assert_eq!(
        member_of(&app, "alice").await,
        vec![("ops".to_owned(), "provider".to_owned())]
    );
    let removed = actions(&app, "group.member_remove").await;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["actor"], "oidc:provider");
    assert_eq!(removed[0]["target"], "user-group:keyportal-admins");
}

/// Every refusal: a clear page (401, the reason named), an audit event with the reason, no
/// session, and nothing else changed.
async fn assert_refused(app: &TestApp, b: &mut Browser, callback: &str, reason: &str) {
    let before = data_counts(&app.db.pool).await;
    let refusals = actions(app, "session.oidc_refused").await.len();
    let res = b.get(callback).await;
    assert_eq!(res.status, 401, "{reason}: {}", res.body);
    assert!(
        res.body.contains(reason),
        "the page names {reason}: {}",
        res.body
    );
    assert!(
        res.body.contains("Sign-in with Test IdP failed"),
        "{}",
        res.body
    );
    assert!(
        res.set_cookie("kp_session").is_none(),
        "{reason}: no session"
    );
    let events = actions(app, "session.oidc_refused").await;
    assert_eq!(events.len(), refusals + 1, "{reason} audited");
    assert_eq!(events.last().unwrap()["detail"]["reason"], reason);
    let mut after = data_counts(&app.db.pool).await;
    // audit_events grew by the refusal's event; nothing else changed.
    after[5] -= 1;
    assert_eq!(before, after, "{reason} changed nothing");
    let home = b.get("/").await;
    assert_eq!(home.status, 303, "{reason}: not signed in");
}

#[tokio::test]
async fn callbacks_that_do_not_belong_to_this_sign_in_are_refused_with_the_reason() {
    let (app, idp) = portal_with_idp().await;

    // Wrong state: the callback's state is not the one in this browser's cookie.
    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "bob", "bob-pass").await;
    let forged = callback.replace("state=", "state=x");
    assert_refused(&app, &mut b, &forged, "state_mismatch").await;

    // A callback from a sign-in that started in another browser (login CSRF).
    let mut victim = app.browser();
    let mut attacker = app.browser();
    let callback = sign_in(&app, &idp, &mut attacker, "bob", "bob-pass").await;
    assert_refused(&app, &mut victim, &callback, "state_mismatch").await;

    // A used callback, replayed: the state was consumed.
    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "bob", "bob-pass").await;
    assert_eq!(b.get(&callback).await.status, 303, "first use signs in");
    let state_cookie = b.cookies.get("kp_session").cloned();
    assert!(state_cookie.is_some());
    let mut replay = app.browser();
    // The replaying browser holds the same state cookie, as an attacker who copied it would.
    let state = query_value(&callback, "state");
    replay
        .cookies
        .insert("kp_oidc_state".into(), state.to_owned());
    assert_refused(&app, &mut replay, &callback, "state_unknown").await;

    // The used code with a fresh sign-in's state: the provider refuses the code (used once,
    // and issued for another PKCE challenge).
    let mut b = app.browser();
    let fresh = start(&mut b).await;
    let fresh_state = query_value(&fresh, "state");
    let code = query_value(&callback, "code");
    let replayed = format!("/auth/oidc/callback?code={code}&state={fresh_state}");
    assert_refused(&app, &mut b, &replayed, "provider_refused").await;

    // The provider itself says no (the person cancelled).
    let mut b = app.browser();
    let authorize = start(&mut b).await;
    let state = query_value(&authorize, "state");
    let cancelled = format!(
        "/auth/oidc/callback?error=access_denied&error_description=cancelled&state={state}"
    );
    assert_refused(&app, &mut b, &cancelled, "provider_error").await;
}

#[tokio::test]
async fn id_tokens_with_a_wrong_issuer_audience_expiry_nonce_or_key_are_refused() {
    let (app, idp) = portal_with_idp().await;
    for (mode, reason) in [
        ("issuer", "id_token_issuer"),
        ("audience", "id_token_audience"),
        ("expired", "id_token_expired"),
        ("nonce", "id_token_nonce"),
        ("unknown_kid", "id_token_unknown_key"),
    ] {
        let mut b = app.browser();
        let callback = sign_in(&app, &idp, &mut b, "bob", "bob-pass").await;
        idp.tamper_next_id_token(mode).await;
        assert_refused(&app, &mut b, &callback, reason).await;
    }
    let (status, _) = answer(app.get(&app.admin, "/api/v1/users/bob")).await;
    assert_eq!(status, 404, "no account was made by a refused sign-in");
}

#[tokio::test]
async fn a_token_signed_with_a_newly_published_key_is_accepted_after_fetching_the_key_set() {
    let (app, idp) = portal_with_idp().await;
    // One sign-in first, so the portal holds the key set from before the rotation.
    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "bob", "bob-pass").await;
    assert_eq!(b.get(&callback).await.status, 303);

    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "bob", "bob-pass").await;
    idp.tamper_next_id_token("rotated_kid").await;
    let res = b.get(&callback).await;
    assert_eq!(res.status, 303, "the new key was fetched: {}", res.body);
    assert_eq!(b.get("/").await.status, 200);
}

#[tokio::test]
async fn the_provider_removing_an_account_ends_its_sessions_and_sync_disables_it() {
    let (app, idp) = portal_with_idp().await;
    idp.put_account("carol", "carol-pass", &["ops"]).await;
    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "carol", "carol-pass").await;
    assert_eq!(b.get(&callback).await.status, 303);
    assert_eq!(
        b.get("/").await.status,
        200,
        "checked at the provider, still known"
    );

    // The provider changes carol's groups: the next re-check syncs them (no new sign-in).
    idp.put_account("carol", "carol-pass", &["dev"]).await;
    assert_eq!(b.get("/").await.status, 200);
    assert_eq!(
        member_of(&app, "carol").await,
        vec![("dev".to_owned(), "provider".to_owned())]
    );

    idp.remove_account("carol").await;
    let res = b.get("/").await;
    assert_eq!(res.status, 303, "the session ended at the next request");
    assert!(res.location().unwrap().starts_with("/login"));
    let ended = actions(&app, "session.ended_by_provider").await;
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["target"], "user:carol");

    // Sync disables the account the provider no longer knows (its keys leave every output);
    // the others it knows stay.
    let mut b2 = app.browser();
    let callback = sign_in(&app, &idp, &mut b2, "bob", "bob-pass").await;
    assert_eq!(b2.get(&callback).await.status, 303);
    let (status, report) = answer(app.post(&app.admin, "/api/v1/oidc/sync", json!(null))).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["disabled"], json!(["carol"]), "{report}");
    assert_eq!(report["known"], json!(["bob"]), "{report}");
    let (_, carol) = answer(app.get(&app.admin, "/api/v1/users/carol")).await;
    assert_eq!(carol["disabled"], true);
    assert_eq!(actions(&app, "user.disabled_by_provider").await.len(), 1);

    // Back at the provider: a sign-in it vouches for enables the account the sync disabled
    // (the sync only read a refused refresh token, which a sign-out at the provider can cause).
    idp.put_account("carol", "carol-pass", &["ops"]).await;
    let mut b3 = app.browser();
    let callback = sign_in(&app, &idp, &mut b3, "carol", "carol-pass").await;
    assert_eq!(b3.get(&callback).await.status, 303);
    let (_, carol) = answer(app.get(&app.admin, "/api/v1/users/carol")).await;
    assert_eq!(carol["disabled"], false);
    assert_eq!(actions(&app, "user.enabled_by_provider").await.len(), 1);

    // An admin's own "disabled" is final: the provider vouching changes nothing.
    let (status, _) = answer(app.patch(
        &app.admin,
        "/api/v1/users/carol",
        json!({ "disabled": true }),
    ))
    .await;
    assert_eq!(status, 200);
    let mut b4 = app.browser();
    let callback = sign_in(&app, &idp, &mut b4, "carol", "carol-pass").await;
    assert_refused(&app, &mut b4, &callback, "disabled").await;

    // Only admins may run the sync.
    let member = app.user_with_token("dave", Role::Member).await;
    let (status, _) = answer(app.post(&member, "/api/v1/oidc/sync", json!(null))).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn sign_out_ends_the_session_and_goes_to_the_providers_logout() {
    let (app, idp) = portal_with_idp().await;
    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "bob", "bob-pass").await;
    assert_eq!(b.get(&callback).await.status, 303);
    let csrf = b.get("/").await.csrf_token();
    let res = b.post_form("/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status, 303);
    let to = res.location().unwrap();
    assert!(
        to.starts_with(&format!("{}/session/end?", idp.issuer)),
        "{to}"
    );
    assert!(to.contains("id_token_hint="), "{to}");
    assert!(to.contains("post_logout_redirect_uri="), "{to}");
    assert_eq!(b.get("/").await.status, 303, "the portal session is over");
    // The provider accepts the request (its confirmation page), i.e. the hint is its own token.
    let at_provider = b.get_url(to).await;
    assert_eq!(at_provider.status, 200, "{}", at_provider.body);
}

#[tokio::test]
async fn password_sign_in_can_be_turned_off_for_all_but_the_break_glass_admin() {
    let (app, _idp) = portal_with_idp().await;
    app.user_with_password("breakglass", Role::Admin, PASSWORD)
        .await;
    app.user_with_password("erin", Role::Member, PASSWORD).await;

    let (_, mut policy) = answer(app.get(&app.admin, "/api/v1/policy")).await;
    policy["local_password_sign_in"] = json!(false);
    let (status, problem) = answer(app.put(&app.admin, "/api/v1/policy", policy.clone())).await;
    assert_eq!(status, 422, "no break-glass admin named: {problem}");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("break_glass_user"));
    policy["break_glass_user"] = json!("breakglass");
    let (status, problem) = answer(app.put(&app.admin, "/api/v1/policy", policy)).await;
    assert_eq!(status, 200, "{problem}");

    let mut b = app.browser();
    let login = b.get("/login").await;
    assert!(
        login.body.contains("Sign in with Test IdP"),
        "{}",
        login.body
    );
    assert!(login.body.contains("Break-glass admin sign-in"));
    let res = b.sign_in("erin", PASSWORD).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(
        res.body.contains("Password sign-in is turned off"),
        "{}",
        res.body
    );
    assert!(res.set_cookie("kp_session").is_none());
    let res = b.sign_in("breakglass", PASSWORD).await;
    assert_eq!(
        res.status, 303,
        "the break-glass admin still signs in: {}",
        res.body
    );
}

#[tokio::test]
async fn without_a_provider_the_provider_routes_say_so() {
    let app = TestApp::spawn().await;
    let mut b = app.browser();
    let login = b.get("/login").await;
    assert!(!login.body.contains("Sign in with"), "no provider button");
    assert_eq!(b.get("/auth/oidc/login").await.status, 404);
    let (status, problem) = answer(app.post(&app.admin, "/api/v1/oidc/sync", json!(null))).await;
    assert_eq!(status, 404, "{problem}");
}

#[tokio::test]
async fn groups_that_follow_the_provider_are_marked_and_refuse_hand_edits() {
    let (app, idp) = portal_with_idp().await;
    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "bob", "bob-pass").await;
    assert_eq!(b.get(&callback).await.status, 303);
    let (_, dev) = answer(app.get(&app.admin, "/api/v1/groups/dev")).await;
    assert_eq!(dev["managed_by"], "provider", "{dev}");
    assert_eq!(dev["members"], json!(["bob"]));
    app.user_with_token("frank", Role::Member).await;
    let before = data_counts(&app.db.pool).await;
    let (status, problem) =
        answer(app.put(&app.admin, "/api/v1/groups/dev/members/frank", json!(null))).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "group_managed_by_provider");
    let (status, _) = answer(app.delete(&app.admin, "/api/v1/groups/dev/members/bob")).await;
    assert_eq!(status, 409);
    assert_eq!(
        data_counts(&app.db.pool).await,
        before,
        "refusals change nothing"
    );
    // Groups made in keyportal say so, and take hand edits.
    let (status, made) =
        answer(app.post(&app.admin, "/api/v1/groups", json!({ "name": "oncall" }))).await;
    assert_eq!(status, 201);
    assert_eq!(made["managed_by"], "portal");
}

#[tokio::test]
async fn keyportal_users_sync_on_the_command_line_disables_who_the_provider_removed() {
    let (app, idp) = portal_with_idp().await;
    idp.put_account("gina", "gina-pass", &["ops"]).await;
    for (user, pass) in [("gina", "gina-pass"), ("bob", "bob-pass")] {
        let mut b = app.browser();
        let callback = sign_in(&app, &idp, &mut b, user, pass).await;
        assert_eq!(b.get(&callback).await.status, 303);
    }
    idp.remove_account("gina").await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), common::idp::CLIENT_SECRET).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyportal"))
        .args(["users", "sync"])
        .env("DATABASE_URL", &app.db.url)
        .env("KEYPORTAL_PUBLIC_URL", app.url(""))
        .env("KEYPORTAL_OIDC_ISSUER", &idp.issuer)
        .env("KEYPORTAL_OIDC_CLIENT_ID", "keyportal")
        .env("KEYPORTAL_OIDC_CLIENT_SECRET_FILE", secret.path())
        .env("KEYPORTAL_OIDC_SCOPES", "openid,profile,email,groups")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["checked"], 2, "{report}");
    assert_eq!(report["disabled"], json!(["gina"]), "{report}");
    assert_eq!(report["known"], json!(["bob"]), "{report}");
    let (_, gina) = answer(app.get(&app.admin, "/api/v1/users/gina")).await;
    assert_eq!(gina["disabled"], true);
    let event = actions(&app, "user.disabled_by_provider").await;
    assert_eq!(event[0]["actor"], "cli");

    // Misconfigured: a clear error and exit 1, nothing changed.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyportal"))
        .args(["users", "sync"])
        .env("DATABASE_URL", &app.db.url)
        .env("KEYPORTAL_OIDC_ISSUER", &idp.issuer)
        .env("KEYPORTAL_OIDC_CLIENT_ID", "keyportal")
        .env_remove("KEYPORTAL_PUBLIC_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEYPORTAL_PUBLIC_URL"));
}

/// A portal whose provider sign-ins may link to existing local accounts by name.
async fn portal_linking_existing() -> (TestApp, Idp) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let idp = Idp::start(&base).await;
    let mut settings = idp.settings(&base);
    settings.link_existing = true;
    let provider = keyportal::oidc::OidcProvider::new(settings).unwrap();
    let app = TestApp::spawn_on(listener, |state| {
        state.services.oidc = Some(Arc::new(provider));
    })
    .await;
    (app, idp)
}

#[tokio::test]
async fn linking_by_name_never_hands_over_an_admin_or_the_break_glass_account() {
    let (app, idp) = portal_linking_existing().await;
    app.user_with_password("alice", Role::Admin, PASSWORD).await;
    app.user_with_password("bob", Role::Member, PASSWORD).await;
    app.user_with_password("henry", Role::Member, PASSWORD)
        .await;
    let (_, mut policy) = answer(app.get(&app.admin, "/api/v1/policy")).await;
    policy["break_glass_user"] = json!("henry");
    assert_eq!(
        answer(app.put(&app.admin, "/api/v1/policy", policy))
            .await
            .0,
        200
    );
    idp.put_account("henry", "henry-pass", &["keyportal-admins"])
        .await;

    for (user, pass) in [("alice", "alice-pass"), ("henry", "henry-pass")] {
        let mut b = app.browser();
        let callback = sign_in(&app, &idp, &mut b, user, pass).await;
        assert_refused(&app, &mut b, &callback, "username_taken").await;
    }
    // An ordinary local account links, audited.
    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "bob", "bob-pass").await;
    assert_eq!(b.get(&callback).await.status, 303);
    let linked = actions(&app, "user.oidc_link").await;
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0]["target"], "user:bob");
}

#[tokio::test]
async fn group_paths_stay_apart_and_an_absent_groups_claim_changes_no_membership() {
    let (app, idp) = portal_with_idp().await;
    idp.put_account(
        "ivy",
        "ivy-pass",
        &["/eng/ops", "/sales/ops", "Not A Name!"],
    )
    .await;
    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "ivy", "ivy-pass").await;
    assert_eq!(b.get(&callback).await.status, 303);
    assert_eq!(
        member_of(&app, "ivy").await,
        vec![
            ("eng.ops".to_owned(), "provider".to_owned()),
            ("sales.ops".to_owned(), "provider".to_owned())
        ]
    );
    // The provider stops sending the claim (a setting, or too many groups): nothing changes.
    idp.put_account_without_groups("ivy", "ivy-pass").await;
    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "ivy", "ivy-pass").await;
    assert_eq!(b.get(&callback).await.status, 303);
    assert_eq!(member_of(&app, "ivy").await.len(), 2);
    assert!(actions(&app, "group.member_remove").await.is_empty());
}

#[tokio::test]
async fn odd_callbacks_and_starts_get_clear_answers_never_a_500() {
    let (app, _idp) = portal_with_idp().await;
    let mut b = app.browser();
    // A `next` too long to be a page of ours: the sign-in starts, and would come back home.
    let long = format!("/auth/oidc/login?next=/{}", "a".repeat(5000));
    assert_eq!(b.get(&long).await.status, 303);
    // Sign-ins in flight are bounded: at 10,000, a new start waits (503), storing nothing.
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM oidc_sign_in_attempts")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    sqlx::query(
        "INSERT INTO oidc_sign_in_attempts (state_hash, nonce, pkce_verifier, next_path, expires_at)
         SELECT sha256(i::text::bytea), repeat('n', 16), repeat('v', 43), '/', now() + interval '5 minutes'
         FROM generate_series(1, 10000 - (SELECT count(*) FROM oidc_sign_in_attempts)) i",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(count().await, 10_000);
    let res = b.get("/auth/oidc/login").await;
    assert_eq!(res.status, 503, "{}", res.body);
    assert!(res.set_cookie("kp_oidc_state").is_none());
    assert_eq!(count().await, 10_000, "nothing stored");
    sqlx::query("DELETE FROM oidc_sign_in_attempts")
        .execute(&app.db.pool)
        .await
        .unwrap();
    // The provider's error text is not shown for a callback this browser did not start.
    let forged = format!(
        "/auth/oidc/callback?error=access_denied&error_description={}",
        "Call+the+helpdesk+at+555-0100".repeat(20)
    );
    assert_refused(&app, &mut b, &forged, "state_mismatch").await;
    let res = b.get(&forged).await;
    assert!(!res.body.contains("helpdesk"), "{}", res.body);
    // Junk and huge parameters.
    for query in [
        "state=&code=".to_owned(),
        format!("state={}&code={}", "s".repeat(10_000), "c".repeat(10_000)),
        "code=%ff%fe&state=%00".to_owned(),
    ] {
        let res = b.get(&format!("/auth/oidc/callback?{query}")).await;
        assert!(
            matches!(res.status, 400 | 401),
            "{query}: {} {}",
            res.status,
            res.body
        );
    }
}

#[tokio::test]
async fn concurrent_requests_never_ask_the_provider_twice_with_one_refresh_token() {
    // The test provider rotates refresh tokens and revokes the grant when an old one comes
    // back: had two requests' checks asked with the same token, the session would end.
    let (app, idp) = portal_with_idp().await;
    let mut b = app.browser();
    let callback = sign_in(&app, &idp, &mut b, "bob", "bob-pass").await;
    assert_eq!(b.get(&callback).await.status, 303);
    let cookie = format!("kp_session={}", b.cookies["kp_session"]);
    for round in 0..5 {
        let answers = futures_util::future::join_all((0..8).map(|_| {
            app.client
                .get(app.url("/api/v1/me"))
                .header("cookie", &cookie)
                .send()
        }))
        .await;
        for a in answers {
            assert_eq!(a.unwrap().status(), 200, "round {round}");
        }
    }
    assert!(actions(&app, "session.ended_by_provider").await.is_empty());
    // And the provider still knows the grant: the token kept is the latest.
    idp.put_account("bob", "bob-pass", &["ops"]).await;
    assert_eq!(b.get("/").await.status, 200);
    assert_eq!(
        member_of(&app, "bob").await,
        vec![("ops".to_owned(), "provider".to_owned())]
    );
}
