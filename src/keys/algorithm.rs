//! SSH public key algorithm names: the closed list keyportal knows.
//!
//! Anything else written in the type position is `unknown_algorithm`, including the
//! `name@domain` forms that a generic parser would accept as opaque keys.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Ed25519,
    SkEd25519,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    SkEcdsaP256,
    Rsa,
    Dsa,
    /// OpenSSH 10.5's post-quantum hybrid: an ML-DSA-44 key and an Ed25519 key, both of which
    /// must verify a signature.
    MlDsa44Ed25519,
}

/// The elliptic curves of the ECDSA algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// The curve identifier written inside an ECDSA key blob.
    pub fn ssh_name(self) -> &'static str {
        match self {
            Curve::P256 => "nistp256",
            Curve::P384 => "nistp384",
            Curve::P521 => "nistp521",
        }
    }

    pub fn bits(self) -> u32 {
        match self {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }

    /// Length of one coordinate in bytes.
    pub fn field_bytes(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

impl Algorithm {
    pub const ALL: [Algorithm; 9] = [
        Algorithm::Ed25519,
        Algorithm::MlDsa44Ed25519,
        Algorithm::SkEd25519,
        Algorithm::EcdsaP256,
        Algorithm::EcdsaP384,
        Algorithm::EcdsaP521,
        Algorithm::SkEcdsaP256,
        Algorithm::Rsa,
        Algorithm::Dsa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ssh-ed25519",
            Algorithm::SkEd25519 => "sk-ssh-ed25519@openssh.com",
            Algorithm::EcdsaP256 => "ecdsa-sha2-nistp256",
            Algorithm::EcdsaP384 => "ecdsa-sha2-nistp384",
            Algorithm::EcdsaP521 => "ecdsa-sha2-nistp521",
            Algorithm::SkEcdsaP256 => "sk-ecdsa-sha2-nistp256@openssh.com",
            Algorithm::Rsa => "ssh-rsa",
            Algorithm::Dsa => "ssh-dss",
            Algorithm::MlDsa44Ed25519 => "ssh-mldsa44-ed25519@openssh.com",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().as_bytes() == name)
    }

    pub fn curve(self) -> Option<Curve> {
        match self {
            Algorithm::EcdsaP256 | Algorithm::SkEcdsaP256 => Some(Curve::P256),
            Algorithm::EcdsaP384 => Some(Curve::P384),
            Algorithm::EcdsaP521 => Some(Curve::P521),
            _ => None,
        }
    }

    /// Bit in an [`AlgorithmSet`].
    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Algorithm::from_name(name.as_bytes())
            .ok_or_else(|| serde::de::Error::custom(format!("unknown SSH key algorithm {name:?}")))
    }
}

/// Whether a type name is an OpenSSH certificate type (`*-cert-v01@openssh.com`).
pub fn is_certificate_type(name: &[u8]) -> bool {
    name.ends_with(b"-cert-v01@openssh.com") || name.ends_with(b"-cert-v00@openssh.com")
}

/// A set of algorithms, small enough to copy: the policy's allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlgorithmSet(u16);

impl AlgorithmSet {
    pub fn empty() -> Self {
        AlgorithmSet(0)
    }

    pub fn contains(self, a: Algorithm) -> bool {
        self.0 & a.bit() != 0
    }

    pub fn insert(&mut self, a: Algorithm) {
        self.0 |= a.bit();
    }

    pub fn remove(&mut self, a: Algorithm) {
        self.0 &= !a.bit();
    }

    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Algorithm> for AlgorithmSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        let mut set = AlgorithmSet::empty();
        for a in iter {
            set.insert(a);
        }
        set
    }
}

impl Serialize for AlgorithmSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for AlgorithmSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Algorithm>::deserialize(d)?.into_iter().collect())
    }
}
