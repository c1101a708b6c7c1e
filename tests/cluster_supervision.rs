//! Crash recovery of the private cluster: when its postmaster is killed, `serve` starts it
//! again and `/readyz` answers 200 within 10 s; when several `serve` share the cluster and the
//! one that started it dies too, a survivor does it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::served::Served;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn world_searchable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kp-super-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn postmaster_pid(data: &Path) -> i32 {
    std::fs::read_to_string(data.join("pgdata/postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Polls `/readyz` until it answers 200; the time that took, or a panic after `limit`.
async fn ready_again(addr: &str, since: Instant, limit: Duration) -> Duration {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    loop {
        if let Ok(res) = client.get(format!("http://{addr}/readyz")).send().await {
            assert!(
                res.status() == 200 || res.status() == 503,
                "while the database is down the answer is 503, got {}",
                res.status()
            );
            if res.status() == 200 {
                return since.elapsed();
            }
        }
        assert!(
            since.elapsed() < limit,
            "/readyz not 200 within {limit:?} of the crash"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_restarts_its_cluster_after_the_postmaster_is_killed() {
    let dir = world_searchable_tempdir();
    let data = dir.path().join("data");
    let (mut served, addr) = Served::start(&data, &[]);
    let old = postmaster_pid(&data);
    let killed = Instant::now();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let took = ready_again(&addr, killed, Duration::from_secs(10)).await;
    eprintln!("ready again {took:?} after SIGKILL of the postmaster");
    assert_ne!(postmaster_pid(&data), old, "a new postmaster");
    served.wait_for("starting it again", Duration::from_secs(5));
    let (status, _) = served.terminate(Duration::from_secs(20));
    assert!(status.success());
    assert!(
        !data.join("pgdata/postmaster.pid").exists(),
        "stopped with serve, not restarted behind its back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surviving_serve_takes_over_when_the_one_that_started_the_cluster_dies() {
    let dir = world_searchable_tempdir();
    let data = dir.path().join("data");
    let (first, _) = Served::start(&data, &[]);
    let (second, addr) = Served::start(&data, &[]);
    first.kill_hard();
    let killed = Instant::now();
    kill(Pid::from_raw(postmaster_pid(&data)), Signal::SIGKILL).unwrap();
    let took = ready_again(&addr, killed, Duration::from_secs(10)).await;
    eprintln!("ready again {took:?} after SIGKILL of the starter and the postmaster");
    let (status, _) = second.terminate(Duration::from_secs(20));
    assert!(status.success());
}
