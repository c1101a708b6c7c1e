//! Password hashing under one bound.
//!
//! Each argon2 hash takes ~19 MiB and a core for tens of milliseconds, and sign-in is open to
//! anyone. So every argon2 call (sign-in check, new or changed password) takes a slot of one
//! semaphore sized to the cores; when no slot is free the caller is answered at once
//! ([`ServiceError::Busy`]) instead of queueing: a flood of sign-ins costs a bounded amount of
//! memory and CPU, and the rest of the portal (fetch-keys above all) keeps answering.
//! The slot is held by the blocking task itself, so a request dropped mid-hash (client gone,
//! timeout) still holds its slot until the hash is done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

use super::ServiceError;

/// How long a caller turned away for lack of a slot is told to wait.
const BUSY_RETRY_SECS: u64 = 1;

/// The bound on concurrent argon2 work, and its gauges for `/metrics`.
#[derive(Debug)]
pub struct PasswordHashing {
    slots: Arc<Semaphore>,
    capacity: usize,
    in_flight: Arc<AtomicU64>,
    peak: Arc<AtomicU64>,
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
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        PasswordHashing {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            in_flight: Arc::new(AtomicU64::new(0)),
            peak: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Runs `work` on the blocking pool if a slot is free; `Busy` otherwise.
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
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let now = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            let _counted = InFlight(in_flight);
            peak.fetch_max(now, Ordering::Relaxed);
            work()
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("password hashing did not finish: {e}")))
    }

    /// argon2id with a random salt; the hash string carries its parameters.
    pub async fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let password = password.to_owned();
        self.run(move || argon2_hash(&password)).await?
    }

    /// Whether `password` matches `hash`. Without a (usable) hash the same argon2 work is done,
    /// so that the answer's timing does not tell whether the account exists.
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

fn argon2_hash(password: &str) -> Result<String, ServiceError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
}

fn password_matches(password: &str, hash: Option<&str>) -> bool {
    let argon2 = Argon2::default();
    match hash.and_then(|h| PasswordHash::new(h).ok()) {
        Some(parsed) => argon2.verify_password(password.as_bytes(), &parsed).is_ok(),
        None => {
            let salt = SaltString::encode_b64(b"keyportal-nobody").ok();
            if let Some(salt) = salt {
                let _ = argon2.hash_password(password.as_bytes(), &salt);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
