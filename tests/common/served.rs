//! `keyportal serve` as a real child process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `keyportal serve` as a child process, with its log lines streamed back.
pub struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Served {
    /// `serve` on a free port of 127.0.0.1 with its own data dir (no `DATABASE_URL` unless
    /// `env` gives one); returns it and its address once it listens.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> (Served, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyportal"))
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env("KEYPORTAL_DATA_DIR", data_dir)
            .env("KEYPORTAL_LISTEN", "127.0.0.1:0")
            .env("KEYPORTAL_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keyportal serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Served {
            child,
            lines,
            log: Vec::new(),
        };
        let line = served.wait_for(
            "keyportal is listening on http://",
            Duration::from_secs(120),
        );
        let addr = line
            .split("http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        (served, addr)
    }

    pub fn wait_for(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.log.push(line.clone());
                    if hit {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?} within {within:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The process id of `serve`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: a crash, with no clean-up at all.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status, which must come within `within`.
    pub fn terminate(mut self, within: Duration) -> (std::process::ExitStatus, Vec<String>) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.log.extend(self.lines.try_iter());
                return (status, std::mem::take(&mut self.log));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "keyportal did not stop within {within:?} of SIGTERM; log:\n{}",
                    self.log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let _ = self.child.wait();
        }
    }
}
