//! Sign-in under attack: the failure limits hold for parallel attempts, and password hashing
//! never runs more than the bound at once (it answers "busy" instead of queueing).

mod common;

use common::browser::{Browser, Page};
use common::TestApp;
use keyportal::domain::Role;

const PASSWORD: &str = "correct horse battery staple";

/// Sign-in forms ready to post at once: one browser per attempt, each with its form token.
async fn ready_browsers(app: &TestApp, n: usize) -> Vec<(Browser, String)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut b = app.browser();
        let token = b.get("/login").await.csrf_token();
        out.push((b, token));
    }
    out
}

/// Posts every attempt `(username, password)` at the same time; the answers in order.
async fn sign_in_all_at_once(
    browsers: Vec<(Browser, String)>,
    attempts: Vec<(String, String)>,
) -> Vec<Page> {
    let tasks: Vec<_> = browsers
        .into_iter()
        .zip(attempts)
        .map(|((mut b, token), (user, password))| {
            tokio::spawn(async move {
                b.post_form(
                    "/login",
                    &[
                        ("username", user.as_str()),
                        ("password", password.as_str()),
                        ("csrf_token", token.as_str()),
                    ],
                )
                .await
            })
        })
        .collect();
    let mut pages = Vec::new();
    for t in tasks {
        pages.push(t.await.expect("sign-in task"));
    }
    pages
}

/// A gauge from `/metrics`.
async fn gauge(app: &TestApp, name: &str) -> u64 {
    common::metric(&app.url(""), name).await as u64
}

/// Every answer that is not a plain failure must be "limited" or "busy", and say when to retry.
fn assert_refusals_say_when(pages: &[Page]) {
    let count = |s: u16| pages.iter().filter(|p| p.status == s).count();
    eprintln!(
        "401: {}, 429: {}, 503: {}",
        count(401),
        count(429),
        count(503)
    );
    for p in pages.iter().filter(|p| p.status != 401) {
        assert!(
            p.status == 429 || p.status == 503,
            "{}: {}",
            p.status,
            p.body
        );
        let retry: u64 = p.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
    }
}

/// Wrong passwords one after another (new account names from `users`) until refused; how many
/// were answered 401 before the first 429.
async fn failures_until_refused(app: &TestApp, users: impl Fn(usize) -> String) -> usize {
    let mut b = app.browser();
    for i in 0..30 {
        let res = b.sign_in(&users(i), "still not the password").await;
        match res.status {
            401 => continue,
            429 => return i,
            other => panic!("{other}: {}", res.body),
        }
    }
    panic!("never refused")
}

async fn failures_for(app: &TestApp, username: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sign_in_failures WHERE username = $1")
        .bind(username)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_for_one_account_get_at_most_five_tries_and_bounded_hashing() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let browsers = ready_browsers(&app, 40).await;
    let attempts = (0..40)
        .map(|i| ("alice".to_owned(), format!("wrong password {i}")))
        .collect();
    let pages = sign_in_all_at_once(browsers, attempts).await;

    // Attempts that overlap may all be refused (each counts the others), never all let through.
    let failed = pages.iter().filter(|p| p.status == 401).count();
    assert!(failed <= 5, "{failed} answered 401");
    assert_refusals_say_when(&pages);
    // Only real failures are counted: refused and busy attempts leave no row behind...
    assert_eq!(failures_for(&app, "alice").await, failed as i64);
    // ...so the account gets exactly five tries in all.
    let more = failures_until_refused(&app, |_| "alice".to_owned()).await;
    assert_eq!(failed + more, 5, "{failed} in parallel, then {more}");

    let slots = gauge(&app, "keyportal_password_hash_slots").await;
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(slots, cores, "the bound is the number of cores");
    let peak = gauge(&app, "keyportal_password_hashes_in_flight_peak").await;
    assert!((1..=slots).contains(&peak), "peak {peak}, slots {slots}");
    assert_eq!(gauge(&app, "keyportal_password_hashes_in_flight").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_from_one_address_over_many_accounts_get_at_most_twenty_tries() {
    let app = TestApp::spawn().await;
    let browsers = ready_browsers(&app, 60).await;
    // Two attempts per account: no account reaches its own limit, only the address does.
    let attempts = (0..60)
        .map(|i| (format!("user{}", i / 2), "not the password".to_owned()))
        .collect();
    let pages = sign_in_all_at_once(browsers, attempts).await;

    let failed = pages.iter().filter(|p| p.status == 401).count();
    assert!(failed <= 20, "{failed} answered 401");
    assert_refusals_say_when(&pages);
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sign_in_failures WHERE client_addr = '127.0.0.1'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(recorded, failed as i64);
    let more = failures_until_refused(&app, |i| format!("other{i}")).await;
    assert_eq!(failed + more, 20, "{failed} in parallel, then {more}");
    let peak = gauge(&app, "keyportal_password_hashes_in_flight_peak").await;
    assert!(peak <= gauge(&app, "keyportal_password_hash_slots").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_sign_ins_never_hashes_more_than_the_cores_at_once_and_busy_answers_at_once() {
    // Limits out of the way: only the hashing bound stands between the flood and the memory.
    let app = TestApp::spawn_with(|s| {
        s.services.sessions.max_failures_per_account = 1000;
        s.services.sessions.max_failures_per_address = 1000;
    })
    .await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let browsers = ready_browsers(&app, 40).await;
    let attempts = (0..40)
        .map(|i| ("alice".to_owned(), format!("wrong password {i}")))
        .collect();
    let pages = sign_in_all_at_once(browsers, attempts).await;

    assert_refusals_say_when(&pages);
    let busy: Vec<&Page> = pages.iter().filter(|p| p.status == 503).collect();
    assert!(pages.iter().all(|p| p.status == 401 || p.status == 503));
    for p in busy {
        assert!(p.body.contains("Too many sign-ins at once"), "{}", p.body);
    }
    let slots = gauge(&app, "keyportal_password_hash_slots").await;
    let peak = gauge(&app, "keyportal_password_hashes_in_flight_peak").await;
    assert!((1..=slots).contains(&peak), "peak {peak}, slots {slots}");
    // Busy attempts are not failures.
    let failed = pages.iter().filter(|p| p.status == 401).count();
    assert_eq!(failures_for(&app, "alice").await, failed as i64);
    // After the flood, the right password works.
    assert_eq!(app.browser().sign_in("alice", PASSWORD).await.status, 303);
}
