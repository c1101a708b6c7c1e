//! Password hashing under one bound.
//!
//! Each argon2 hash takes ~19 MiB and a core for tens of milliseconds, and sign-in is open to
//! anyone. So every argon2 call (sign-in check, new or changed password) takes a slot of one
//! semaphore sized to the cores; when no slot is free the caller is answered at once
//! ([`ServiceError::Busy`]) instead of queueing: a flood of sign-ins costs a bounded amount of
//! memory and CPU, and the rest of the portal (fetch-keys above all) keeps answering.
//! The slot is held by the job itself, so a request dropped mid-hash (client gone, timeout)
//! still holds its slot until the hash is done.
//!
//! The hashes run on as many threads of their own as there are slots, each reusing one
//! argon2 working memory: freed after each hash, glibc kept those blocks (its mmap threshold
//! rises at the first free), and a debug build held ~300 MB after 15 sign-ins; now a flood of
//! 1000 sign-ins leaves it at ~55 MB (2 cores).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::ServiceError;

/// How long a caller turned away for lack of a slot is told to wait.
const BUSY_RETRY_SECS: u64 = 1;

type Job = Box<dyn FnOnce() + Send>;

/// The bound on concurrent argon2 work, its threads, and its gauges for `/metrics`.
pub struct PasswordHashing {
    slots: Arc<Semaphore>,
    capacity: usize,
    jobs: mpsc::Sender<Job>,
    in_flight: Arc<AtomicU64>,
    peak: Arc<AtomicU64>,
}

impl std::fmt::Debug for PasswordHashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHashing")
            .field("capacity", &self.capacity)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Default for PasswordHashing {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        PasswordHashing::with_capacity(cores)
    }
}

/// Counts a hash in flight for as long as it lives.
struct InFlight(Arc<AtomicU64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PasswordHashing {
    /// `capacity` hashing threads (at least one); they end when this value is dropped.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..capacity {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("kp-password-{i}"))
                .spawn(move || loop {
                    // The lock is held only to take the next job, not to run it.
                    let next = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    match next {
                        // A panicking job must not take the thread (and so a slot) with it.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        PasswordHashing {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            jobs,
            in_flight: Arc::new(AtomicU64::new(0)),
            peak: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Runs `work` on a hashing thread if a slot is free; `Busy` otherwise.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServiceError::Busy {
                retry_after_secs: BUSY_RETRY_SECS,
            })?;
        let (in_flight, peak) = (self.in_flight.clone(), self.peak.clone());
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let result = {
                let _permit = permit;
                let now = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                let _counted = InFlight(in_flight);
                peak.fetch_max(now, Ordering::Relaxed);
                work()
            };
            // The caller may be gone (request dropped); the slot is free all the same.
            let _ = done.send(result);
        });
        let lost = || ServiceError::Internal("password hashing did not finish".into());
        self.jobs.send(job).map_err(|_| lost())?;
        result.await.map_err(|_| lost())
    }

    /// argon2id with a random salt; the hash string carries its parameters.
    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let password = password.to_owned();
        self.run(move || argon2_hash(&password)).await?
    }

    /// Whether `password` matches `hash`. Without a (usable) hash the same argon2 work is done,
    /// so that the answer's timing does not tell whether the account exists.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, ServiceError> {
        let password = password.to_owned();
        self.run(move || password_matches(&password, hash.as_deref()))
            .await
    }

    /// Prometheus text: hashes running now, the most ever at once, and the bound.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP keyportal_password_hashes_in_flight Password hashes (argon2) running now.\n\
             # TYPE keyportal_password_hashes_in_flight gauge\n\
             keyportal_password_hashes_in_flight {}\n\
             # HELP keyportal_password_hashes_in_flight_peak Most password hashes ever running at once.\n\
             # TYPE keyportal_password_hashes_in_flight_peak gauge\n\
             keyportal_password_hashes_in_flight_peak {}\n\
             # HELP keyportal_password_hash_slots Password hashes allowed at once (the cores).\n\
             # TYPE keyportal_password_hash_slots gauge\n\
             keyportal_password_hash_slots {}\n",
            self.in_flight.load(Ordering::Relaxed),
            self.peak.load(Ordering::Relaxed),
            self.capacity
        )
    }
}

thread_local! {
    /// argon2's working memory (~19 MiB), kept by each hashing thread and reused by every hash
    /// it runs (see the module docs for why it is not allocated per hash).
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The argon2 output for these inputs, computed in this thread's reused memory.
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let count = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        blocks.resize(count, Block::default());
        argon2.hash_password_into_with_memory(password, salt, out, &mut blocks[..])
    })
}

/// argon2id with the crate's default parameters and a random salt, as a PHC string (the same
/// strings `Argon2::default().hash_password` makes).
fn argon2_hash(password: &str) -> Result<String, ServiceError> {
    let failed =
        |e: &dyn std::fmt::Display| ServiceError::Internal(format!("password hashing failed: {e}"));
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| failed(&e))?;
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(
        Algorithm::default(),
        Version::default(),
        params.clone(),
        password.as_bytes(),
        salt_bytes,
        &mut out,
    )
    .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` gives the stored PHC string's output, compared in constant time.
fn stored_hash_matches(password: &str, stored: &PasswordHash<'_>) -> Option<bool> {
    let algorithm = Algorithm::try_from(stored.algorithm).ok()?;
    let version = match stored.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(stored).ok()?;
    let expected = stored.hash?;
    let mut salt = [0u8; 64];
    let salt = stored.salt?.decode_b64(&mut salt).ok()?;
    let mut out = vec![0u8; expected.len()];
    argon2_into(
        algorithm,
        version,
        params,
        password.as_bytes(),
        salt,
        &mut out,
    )
    .ok()?;
    Some(bool::from(expected.as_bytes().ct_eq(&out)))
}

fn password_matches(password: &str, hash: Option<&str>) -> bool {
    match hash.and_then(|h| PasswordHash::new(h).ok()) {
        Some(parsed) => stored_hash_matches(password, &parsed).unwrap_or(false),
        None => {
            // The same work as for a real account, so that timing does not tell.
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            let _ = argon2_into(
                Algorithm::default(),
                Version::default(),
                Params::default(),
                password.as_bytes(),
                b"keyportal-nobody",
                &mut out,
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_the_standard_phc_strings_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Stored before this module reused memory: still accepted.
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(password_matches("correct horse battery", Some(&old)));
        assert!(!password_matches("correct horse batterY", Some(&old)));
        // Made here: readable by the standard verifier, with the default parameters.
        let new = argon2_hash("correct horse battery").unwrap();
        assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{new}");
        let parsed = PasswordHash::new(&new).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
    }

    #[test]
    fn a_password_matches_only_its_own_hash() {
        let hash = argon2_hash("correct horse battery").unwrap();
        assert!(password_matches("correct horse battery", Some(&hash)));
        assert!(!password_matches("correct horse batterY", Some(&hash)));
        assert!(!password_matches("correct horse battery", None));
        assert!(!password_matches(
            "correct horse battery",
            Some("not a hash")
        ));
    }

    #[tokio::test]
    async fn a_full_bound_answers_busy_at_once_instead_of_queueing() {
        let hashing = PasswordHashing::with_capacity(1);
        let held = hashing.slots.clone().try_acquire_owned().unwrap();
        // Queueing would wait here forever for the held slot.
        let res = hashing.hash("correct horse battery").await;
        assert!(matches!(res, Err(ServiceError::Busy { .. })), "{res:?}");
        drop(held);
        let hash = hashing.hash("correct horse battery").await.unwrap();
        assert!(hashing
            .verify("correct horse battery", Some(hash))
            .await
            .unwrap());
        assert!(hashing
            .render_metrics()
            .contains("keyportal_password_hashes_in_flight_peak 1\n"));
        assert!(hashing
            .render_metrics()
            .contains("keyportal_password_hashes_in_flight 0\n"));
    }
}
