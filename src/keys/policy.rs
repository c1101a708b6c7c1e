//! The validation policy: every threshold of the contract, passed to the validator as a value.

use serde::{Deserialize, Serialize};

use super::algorithm::{Algorithm, AlgorithmSet};

/// Longest comment the database stores (see migrations/0001_initial.sql).
pub const MAX_STORED_COMMENT_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Smallest accepted RSA modulus, in bits.
    pub min_rsa_bits: u32,
    /// Largest accepted RSA modulus, in bits.
    pub max_rsa_bits: u32,
    /// Largest accepted RSA public exponent, in bits (65537 has 17).
    pub max_rsa_exponent_bits: u32,
    /// Algorithms accepted; a known algorithm outside this set is `algorithm_disallowed`.
    #[schema(value_type = Vec<String>, example = json!(["ssh-ed25519", "ssh-rsa"]))]
    pub allowed_algorithms: AlgorithmSet,
    /// Longest accepted comment, in bytes.
    pub max_comment_bytes: usize,
    /// Largest accepted input (one key, or one line of an authorized_keys file), in bytes.
    pub max_input_bytes: usize,
    /// Most keys one user may hold. An account rule kept with the policy so one admin-edited
    /// document holds every limit; the validator does not read it.
    pub max_keys_per_user: u32,
    /// Longest lifetime of a personal API token, in days; a token made without an expiry gets
    /// this one. An account rule, not read by the validator.
    pub max_token_days: u32,
    /// Longest access a member may request (and an approval grant), in hours. An account
    /// rule, not read by the validator.
    pub max_access_request_hours: u32,
    /// Hours after which a request nobody decided lapses. An account rule.
    pub access_request_pending_hours: u32,
    /// Whether people may sign in with a keyportal password. Off: only through the identity
    /// provider, except `break_glass_user`. A sign-in rule, not read by the validator.
    pub local_password_sign_in: bool,
    /// The one account that may still sign in with its password when local passwords are off
    /// (for when the provider is down). Required when they are off.
    pub break_glass_user: String,
    /// Longest validity of a certificate the user CA issues, in seconds (it is never longer
    /// than the grant's or the key's expiry either). A certificate rule, not read by the
    /// validator.
    pub max_certificate_validity: u32,
    /// Days before a key's expiry that its owner is told by email (and admins' daily digest
    /// counts it as expiring). A notification rule, not read by the validator.
    pub notify_expiring_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_rsa_bits: 2048,
            max_rsa_bits: 16384,
            max_rsa_exponent_bits: 33,
            allowed_algorithms: Algorithm::ALL
                .into_iter()
                .filter(|a| *a != Algorithm::Dsa)
                .collect(),
            max_comment_bytes: 1024,
            max_input_bytes: 16 * 1024,
            max_keys_per_user: 100,
            max_token_days: 90,
            max_access_request_hours: 168,
            access_request_pending_hours: 72,
            local_password_sign_in: true,
            break_glass_user: String::new(),
            max_certificate_validity: 8 * 3600,
            notify_expiring_days: 14,
        }
    }
}

impl Policy {
    /// Checks the policy itself makes sense; used wherever a policy is edited.
    pub fn check(&self) -> Result<(), String> {
        if self.min_rsa_bits > self.max_rsa_bits {
            return Err(format!(
                "min_rsa_bits ({}) is above max_rsa_bits ({})",
                self.min_rsa_bits, self.max_rsa_bits
            ));
        }
        if !(17..=4096).contains(&self.max_rsa_exponent_bits) {
            return Err("max_rsa_exponent_bits must be between 17 and 4096".into());
        }
        if self.max_input_bytes < 256 || self.max_input_bytes > 1024 * 1024 {
            return Err("max_input_bytes must be between 256 and 1048576".into());
        }
        if !(1..=100_000).contains(&self.max_keys_per_user) {
            return Err("max_keys_per_user must be between 1 and 100000".into());
        }
        if !(1..=3650).contains(&self.max_token_days) {
            return Err("max_token_days must be between 1 and 3650".into());
        }
        if !(1..=8760).contains(&self.max_access_request_hours) {
            return Err("max_access_request_hours must be between 1 and 8760".into());
        }
        if !(1..=720).contains(&self.access_request_pending_hours) {
            return Err("access_request_pending_hours must be between 1 and 720".into());
        }
        if !(60..=31_536_000).contains(&self.max_certificate_validity) {
            return Err(
                "max_certificate_validity must be between 60 and 31536000 seconds (a year)".into(),
            );
        }
        if !(1..=365).contains(&self.notify_expiring_days) {
            return Err("notify_expiring_days must be between 1 and 365".into());
        }
        if !self.break_glass_user.is_empty()
            && crate::domain::Username::parse(&self.break_glass_user).is_err()
        {
            return Err(format!(
                "break_glass_user {:?} is not a username",
                self.break_glass_user
            ));
        }
        if !self.local_password_sign_in && self.break_glass_user.is_empty() {
            return Err("turning local password sign-in off needs a break_glass_user, the admin who can still sign in when the identity provider is down".into());
        }
        if self.max_comment_bytes > self.max_input_bytes {
            return Err("max_comment_bytes cannot exceed max_input_bytes".into());
        }
        // The schema stores at most 4096 bytes of comment (CHECK on ssh_keys.comment).
        if self.max_comment_bytes > MAX_STORED_COMMENT_BYTES {
            return Err(format!(
                "max_comment_bytes can be at most {MAX_STORED_COMMENT_BYTES}"
            ));
        }
        Ok(())
    }
}
