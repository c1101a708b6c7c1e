//! A key's shape: the few facts about a valid key that the policy judges. Whole-set views (the
//! dashboard, the policy preview) count keys by shape in SQL and judge each shape once here,
//! instead of re-validating a million keys; the keys they show are still validated from their
//! bytes.

use serde::Serialize;

use super::algorithm::Algorithm;
use super::error::KeyErrorCode;
use super::policy::Policy;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct KeyShape {
    /// The algorithm's name as stored; a name this version does not know is never valid.
    pub algorithm: String,
    /// RSA/DSA modulus, ECDSA curve, 256 for Ed25519 and the hybrid.
    pub bits: u32,
    /// Bit length of the RSA public exponent; 0 for every other algorithm.
    pub rsa_exponent_bits: u32,
    pub comment_bytes: u32,
    /// Length of the canonical line `type base64[ comment]`.
    pub line_bytes: u32,
}

impl KeyShape {
    /// What the validator's policy checks say about an intrinsically valid key of this shape,
    /// in the order the validator applies them to a stored key: line length, then the RSA
    /// exponent and size, the algorithm, the comment. `None`: the policy accepts it.
    ///
    /// This mirrors the policy checks of `validate_stored` (src/keys/mod.rs, checks.rs); the
    /// corpus test `shape_verdicts_agree_with_the_validator` holds the two together.
    pub fn policy_verdict(&self, policy: &Policy) -> Option<KeyErrorCode> {
        let Some(algorithm) = Algorithm::from_name(self.algorithm.as_bytes()) else {
            return Some(KeyErrorCode::UnknownAlgorithm);
        };
        if self.line_bytes as usize > policy.max_input_bytes {
            return Some(KeyErrorCode::TooLong);
        }
        if algorithm == Algorithm::Rsa {
            if self.rsa_exponent_bits > policy.max_rsa_exponent_bits {
                return Some(KeyErrorCode::RsaExponentInvalid);
            }
            if self.bits < policy.min_rsa_bits {
                return Some(KeyErrorCode::KeyTooSmall);
            }
            if self.bits > policy.max_rsa_bits {
                return Some(KeyErrorCode::KeyTooLarge);
            }
        }
        if !policy.allowed_algorithms.contains(algorithm) {
            return Some(KeyErrorCode::AlgorithmDisallowed);
        }
        if self.comment_bytes as usize > policy.max_comment_bytes {
            return Some(KeyErrorCode::CommentInvalid);
        }
        None
    }
}
