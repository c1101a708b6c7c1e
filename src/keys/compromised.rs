//! RSA keys that parse perfectly and still give the private key away: the per-key checks of
//! `key_compromised` (`shared/spec/key-validation.md`). Each is a pure function of the modulus
//! and decides exactly what the `badkeys` checks of the same name decide (its `smallfactors`,
//! `fermat` and `roca`, which the test suite runs as an oracle).
//!
//! Cost matters: every RSA key is judged on submission and on every read. The order is
//! cheapest first (ROCA, then Fermat's few steps, then the trial division up to 65537).

use std::sync::LazyLock;

use malachite_base::num::arithmetic::traits::{CheckedSqrt, FloorSqrt, Gcd};
use malachite_base::num::basic::traits::Zero;
use malachite_nz::natural::Natural;
use serde::Serialize;

/// Why a well-formed key is refused as `key_compromised`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompromiseReason {
    /// On the portal's blocklist.
    Blocklisted,
    /// The RSA modulus has a prime factor of at most [`SMALL_FACTOR_BOUND`].
    SmallFactor,
    /// The RSA primes are so close that Fermat's method factors the modulus in at most
    /// [`FERMAT_STEPS`] steps.
    Fermat,
    /// The RSA modulus has the structure of the Infineon RSA library's keys (ROCA).
    Roca,
    /// The RSA modulus shares a prime with another known modulus.
    SharedPrime,
}

impl CompromiseReason {
    pub const ALL: [CompromiseReason; 5] = [
        Self::Blocklisted,
        Self::SmallFactor,
        Self::Fermat,
        Self::Roca,
        Self::SharedPrime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocklisted => "blocklisted",
            Self::SmallFactor => "small_factor",
            Self::Fermat => "fermat",
            Self::Roca => "roca",
            Self::SharedPrime => "shared_prime",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// What was found and what to do, for the problem message.
    pub fn explain(self) -> &'static str {
        match self {
            Self::Blocklisted => {
                "this key is on the portal's blocklist of compromised keys; its private key must be \
                 treated as known to others. Make a new key (ssh-keygen -t ed25519) and add that one"
            }
            Self::SmallFactor => {
                "the RSA modulus has a prime factor of at most 65537, so anyone can factor it and \
                 compute the private key (a corrupted key or a broken generator). Make a new key \
                 (ssh-keygen -t ed25519) and add that one"
            }
            Self::Fermat => {
                "the two RSA primes are so close together that Fermat's method factors the modulus \
                 in at most 100 steps, so anyone can compute the private key (a broken key \
                 generator). Make a new key with an up-to-date tool (ssh-keygen -t ed25519)"
            }
            Self::Roca => {
                "the RSA modulus has the structure of keys made by Infineon's RSA library \
                 (ROCA, CVE-2017-15361), whose private keys can be computed from the public key. \
                 Update the firmware of the smart card or token (or use another device) and make a \
                 new key on it, or make one with ssh-keygen -t ed25519"
            }
            Self::SharedPrime => {
                "the RSA modulus shares a prime factor with another key's modulus, so both private \
                 keys can be computed by anyone who has the two public keys (a key generator with \
                 too little randomness). Make a new key on a machine with a working random source"
            }
        }
    }
}

/// The largest prime `small_factor` divides by: every prime up to and including 65537, as
/// badkeys does. A 2048-bit modulus with any factor below 2^1000 is broken, but a larger bound
/// costs more per key than it finds: a corrupted modulus almost always has a small factor.
pub const SMALL_FACTOR_BOUND: u32 = 65537;

/// Fermat steps tried from floor(sqrt(n)): badkeys' 100, plus the start point.
pub const FERMAT_STEPS: u32 = 100;

/// The version of the computed checks below, stored with each key's verdict
/// (`ssh_keys.compromise_checks`): a change to what they find (a higher bound, a new check)
/// raises it, and keys judged by an older version are judged again.
pub const CHECKS_VERSION: i16 = 1;

/// The first computed check the modulus (big-endian magnitude, odd, at least 3 bytes) fails.
pub fn check_rsa_modulus(n_be: &[u8]) -> Option<CompromiseReason> {
    // An even or empty modulus is `rsa_modulus_invalid` before these checks are asked; it is
    // no input for them (the trial division would divide by zero).
    if n_be.last().is_none_or(|b| b & 1 == 0) {
        return None;
    }
    let limbs = limbs_from_be(n_be);
    if roca(&limbs) {
        return Some(CompromiseReason::Roca);
    }
    let n = Natural::from_owned_limbs_asc(limbs);
    if fermat(&n) {
        return Some(CompromiseReason::Fermat);
    }
    if has_small_factor(&n) {
        return Some(CompromiseReason::SmallFactor);
    }
    None
}

/// 64-bit limbs, least significant first, of a big-endian magnitude.
fn limbs_from_be(bytes: &[u8]) -> Vec<u64> {
    let mut limbs = Vec::with_capacity(bytes.len().div_ceil(8));
    for chunk in bytes.rchunks(8) {
        let mut limb = [0u8; 8];
        limb[8 - chunk.len()..].copy_from_slice(chunk);
        limbs.push(u64::from_be_bytes(limb));
    }
    limbs
}

pub fn natural_from_be(bytes: &[u8]) -> Natural {
    Natural::from_owned_limbs_asc(limbs_from_be(bytes))
}

// ---- small_factor -------------------------------------------------------------------------

/// Odd primes up to the bound, by a sieve evaluated at compile time.
const SIEVE_LEN: usize = SMALL_FACTOR_BOUND as usize + 1;
const fn small_primes_sieve() -> [bool; SIEVE_LEN] {
    let mut composite = [false; SIEVE_LEN];
    composite[0] = true;
    composite[1] = true;
    let mut i = 2;
    while i * i < SIEVE_LEN {
        if !composite[i] {
            let mut j = i * i;
            while j < SIEVE_LEN {
                composite[j] = true;
                j += i;
            }
        }
        i += 1;
    }
    composite
}
static COMPOSITE: [bool; SIEVE_LEN] = small_primes_sieve();

/// The product of every prime up to [`SMALL_FACTOR_BOUND`] (94,000 bits). An immutable
/// constant computed on first use, identical in every process: not state that could make two
/// verdicts differ.
static SMALL_PRIMES_PRODUCT: LazyLock<Natural> = LazyLock::new(|| {
    // Multiply in a balanced tree: one prime at a time would be quadratic.
    let mut level: Vec<Natural> = (2..SIEVE_LEN)
        .filter(|p| !COMPOSITE[*p])
        .map(|p| Natural::from(p as u64))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => a * b,
                [a] => a.clone(),
                _ => Natural::ZERO,
            })
            .collect();
    }
    level.pop().unwrap_or(Natural::ZERO)
});

/// badkeys' `smallfactors`: gcd(n, product of the primes up to 65537) > 1.
fn has_small_factor(n: &Natural) -> bool {
    let r = &*SMALL_PRIMES_PRODUCT % n;
    r.gcd(n) != 1u32
}

// ---- fermat -------------------------------------------------------------------------------

/// Moduli whose quadratic residues filter out non-squares before the exact square root:
/// together they let through about one value in 800 that is not a square.
const SQUARE_FILTERS: [u64; 7] = [64, 63, 65, 11, 17, 19, 23];

const fn squares_mod(m: u64) -> ResidueSet {
    let mut table = [0u64; 2];
    let mut x = 0;
    while x < m {
        let s = (x * x) % m;
        table[(s / 64) as usize] |= 1 << (s % 64);
        x += 1;
    }
    table
}
/// A set of residues below 128, as bits.
type ResidueSet = [u64; 2];
const SQUARE_TABLES: [ResidueSet; 7] = [
    squares_mod(64),
    squares_mod(63),
    squares_mod(65),
    squares_mod(11),
    squares_mod(17),
    squares_mod(19),
    squares_mod(23),
];

/// badkeys' `fermat`: with a = floor(sqrt(n)), is a^2 - n a perfect square for one of
/// a, a + 1, ..., a + 100? (A perfect square n counts, as in badkeys.)
fn fermat(n: &Natural) -> bool {
    let a0 = n.floor_sqrt();
    let a0_sq = &a0 * &a0;
    if a0_sq == *n {
        return true;
    }
    // t(c) = (a0 + c)^2 - n, tracked modulo each filter: t(c+1) = t(c) + 2(a0 + c) + 1.
    let mut t = [0u64; 7];
    let mut a = [0u64; 7];
    for (k, m) in SQUARE_FILTERS.iter().enumerate() {
        let a_k = u64::try_from(&(&a0 % Natural::from(*m))).unwrap_or(0);
        let n_k = u64::try_from(&(n % Natural::from(*m))).unwrap_or(0);
        a[k] = a_k;
        t[k] = (a_k * a_k % m + m - n_k) % m;
    }
    for c in 1..=u64::from(FERMAT_STEPS) {
        for (k, m) in SQUARE_FILTERS.iter().enumerate() {
            t[k] = (t[k] + 2 * a[k] + 1) % m;
            a[k] = (a[k] + 1) % m;
        }
        let maybe_square = SQUARE_TABLES
            .iter()
            .zip(t)
            .all(|(table, r)| table[(r / 64) as usize] >> (r % 64) & 1 == 1);
        if maybe_square {
            let a_c = &a0 + Natural::from(c);
            let t_c = &a_c * &a_c - n;
            if t_c.checked_sqrt().is_some() {
                return true;
            }
        }
    }
    false
}

// ---- roca ---------------------------------------------------------------------------------

/// The ROCA fingerprint of Nemec et al. (CCS 2017) as badkeys runs it: is n, modulo
/// M' = 2·3·5·…·167, in the subgroup generated by 65537? Infineon's primes are
/// k·M + (65537^a mod M), so their products are; a random modulus almost never is.
/// M' is square-free, so the test runs prime by prime in machine words (CRT).
const ROCA_PRIMES: [u64; 39] = [
    2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];
/// The order of 65537 modulo M', and its prime-power factors (from the ROCA detector).
const ROCA_GENERATOR_ORDER: u64 = 2_454_106_387_091_158_800;
const ROCA_ORDER_PRIME_POWERS: [u64; 13] = [16, 81, 25, 7, 11, 13, 17, 23, 29, 37, 41, 53, 83];
/// Products of the primes above, each below 2^61, so n is reduced in four passes.
const ROCA_GROUPS: [(usize, usize); 4] = [(0, 15), (15, 24), (24, 32), (32, 39)];
const fn roca_group_product(g: usize) -> u64 {
    let (start, end) = ROCA_GROUPS[g];
    let mut product = 1;
    let mut i = start;
    while i < end {
        product *= ROCA_PRIMES[i];
        i += 1;
    }
    product
}
/// Longest modulus the validator can be asked about: 16384 bits (256 limbs) is the policy's
/// ceiling; longer ones take the slower path.
const MAX_LIMBS: usize = 256;
/// 2^(64·i) mod each group's product, so n mod m is a sum of products, not a chain of
/// divisions.
const fn limb_weights(m: u64) -> [u64; MAX_LIMBS] {
    let mut w = [0u64; MAX_LIMBS];
    let mut acc: u128 = 1;
    let mut i = 0;
    while i < MAX_LIMBS {
        w[i] = acc as u64;
        acc = (acc << 64) % (m as u128);
        i += 1;
    }
    w
}
static ROCA_WEIGHTS: [[u64; MAX_LIMBS]; 4] = [
    limb_weights(roca_group_product(0)),
    limb_weights(roca_group_product(1)),
    limb_weights(roca_group_product(2)),
    limb_weights(roca_group_product(3)),
];

/// n mod the product of group `g` (below 2^61): every term limb·weight is below 2^125, so
/// eight of them add up without overflow before one reduction.
fn mod_group(limbs: &[u64], g: usize) -> u64 {
    let m = u128::from(roca_group_product(g));
    if limbs.len() > MAX_LIMBS {
        return limbs
            .iter()
            .rev()
            .fold(0u128, |r, l| ((r << 64) | u128::from(*l)) % m) as u64;
    }
    let mut r: u128 = 0;
    for (chunk, weights) in limbs.chunks(8).zip(ROCA_WEIGHTS[g].chunks(8)) {
        let sum = chunk
            .iter()
            .zip(weights)
            .fold(0u128, |s, (l, w)| s + u128::from(*l) * u128::from(*w));
        r = (r + sum % m) % m;
    }
    r as u64
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut acc = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base % m;
        }
        base = base * base % m;
        exp >>= 1;
    }
    acc
}

fn roca(limbs: &[u64]) -> bool {
    let mut residues = [0u64; 39];
    for (g, (start, end)) in ROCA_GROUPS.into_iter().enumerate() {
        let r = mod_group(limbs, g);
        for i in start..end {
            residues[i] = r % ROCA_PRIMES[i];
        }
    }
    // n^order == 1 (mod M'): exponents reduce mod p - 1 (n is a unit mod p or the test fails).
    let unit_of_order = ROCA_PRIMES
        .iter()
        .zip(residues)
        .all(|(&p, x)| x != 0 && pow_mod(x, ROCA_GENERATOR_ORDER % (p - 1), p) == 1);
    if !unit_of_order {
        return false;
    }
    // For each prime power q^k of the order: n^(order/q^k) is a power of 65537^(order/q^k),
    // with one exponent i < q^k that works for every prime of M' at once.
    ROCA_ORDER_PRIME_POWERS.iter().all(|&qk| {
        let e = ROCA_GENERATOR_ORDER / qk;
        let mut g = [0u64; 39];
        let mut h = [0u64; 39];
        let mut cur = [0u64; 39];
        for (i, &p) in ROCA_PRIMES.iter().enumerate() {
            g[i] = pow_mod(65537, e % (p - 1), p);
            h[i] = pow_mod(residues[i], e % (p - 1), p);
            cur[i] = 1 % p;
        }
        for _ in 0..qk {
            if cur == h {
                return true;
            }
            for (i, &p) in ROCA_PRIMES.iter().enumerate() {
                cur[i] = cur[i] * g[i] % p;
            }
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(n: &Natural) -> Vec<u8> {
        let mut out: Vec<u8> = n
            .to_limbs_asc()
            .iter()
            .rev()
            .flat_map(|l| l.to_be_bytes())
            .collect();
        let zeros = out.iter().take_while(|b| **b == 0).count();
        out.drain(..zeros);
        out
    }

    #[test]
    fn roca_groups_fit_in_a_word_and_cover_every_prime() {
        let mut covered = 0;
        for (start, end) in ROCA_GROUPS {
            assert_eq!(start, covered);
            covered = end;
            ROCA_PRIMES[start..end]
                .iter()
                .try_fold(1u64, |acc, p| acc.checked_mul(*p))
                .expect("group product fits in u64");
        }
        assert_eq!(covered, ROCA_PRIMES.len());
        assert_eq!(
            ROCA_ORDER_PRIME_POWERS.iter().product::<u64>(),
            ROCA_GENERATOR_ORDER
        );
    }

    #[test]
    fn group_residues_agree_with_big_arithmetic() {
        for len in [1usize, 7, 8, 9, 384, 2048, 2056] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 131 + 7) as u8 | 0x80).collect();
            let n = natural_from_be(&bytes);
            assert_eq!(be(&n), bytes);
            for g in 0..ROCA_GROUPS.len() {
                let m = roca_group_product(g);
                assert!(m < 1 << 61);
                let expected = u64::try_from(&(&n % Natural::from(m))).unwrap();
                assert_eq!(
                    mod_group(&limbs_from_be(&bytes), g),
                    expected,
                    "{len} bytes, group {g}"
                );
            }
        }
    }

    #[test]
    fn the_product_of_small_primes_has_every_prime_up_to_65537() {
        let p = &*SMALL_PRIMES_PRODUCT;
        assert_eq!(u64::try_from(&(p % Natural::from(65537u32))).unwrap(), 0);
        assert_eq!(u64::try_from(&(p % Natural::from(65521u32))).unwrap(), 0);
        assert_ne!(u64::try_from(&(p % Natural::from(65539u32))).unwrap(), 0);
        assert_ne!(u64::try_from(&(p % Natural::from(9u32))).unwrap(), 0);
    }

    #[test]
    fn a_perfect_square_and_close_primes_are_fermat() {
        let p = Natural::from(1_000_000_007u64);
        let q = Natural::from(1_000_000_009u64);
        assert!(fermat(&(&p * &p)));
        assert!(fermat(&(&p * &q)));
        let far = Natural::from(4_000_000_007u64);
        assert!(!fermat(&(&p * &far)));
    }
}
