//! Moduli that share a prime: batch GCD over a whole set of RSA moduli (Heninger, Durumeric,
//! Wustrow, Halderman, "Mining your Ps and Qs", USENIX Security 2012).
//!
//! A product tree multiplies the moduli pairwise up to P = n_1 · … · n_k. A remainder tree
//! reduces P modulo each node's square on the way down, which leaves P mod n_i² at the leaves.
//! Then gcd(n_i, (P mod n_i²) / n_i) = gcd(n_i, P / n_i): a value above 1 means n_i shares a
//! prime with another modulus of the set. Pure: same moduli, same answer.

use malachite_base::num::arithmetic::traits::{Gcd, Square};
use malachite_nz::natural::Natural;

/// A modulus that shares a prime with another one of the set (both are indexes into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedPrime {
    pub index: usize,
    pub other: usize,
}

/// Every modulus of `moduli` that shares a prime with another, with one such other modulus.
pub fn shared_primes(moduli: &[Natural]) -> Vec<SharedPrime> {
    let flagged = sharing(moduli);
    // A partner for each: the first other flagged modulus with a common factor. Usually few
    // are flagged; when many are (a broken generator), a partner is found within a few tries
    // because many share each prime.
    let mut found = Vec::with_capacity(flagged.len());
    for &i in &flagged {
        if let Some(&j) = flagged
            .iter()
            .find(|&&j| j != i && (&moduli[i]).gcd(&moduli[j]) != 1u32)
        {
            found.push(SharedPrime { index: i, other: j });
        }
    }
    found
}

/// Indexes of the moduli that share a prime with another modulus of the set.
pub fn sharing(moduli: &[Natural]) -> Vec<usize> {
    if moduli.len() < 2 {
        return Vec::new();
    }
    let mut levels: Vec<Vec<Natural>> = vec![moduli.to_vec()];
    while levels.last().is_some_and(|l| l.len() > 1) {
        let below = &levels[levels.len() - 1];
        let next: Vec<Natural> = below
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => a * b,
                [a] => a.clone(),
                _ => Natural::from(1u32),
            })
            .collect();
        levels.push(next);
    }
    let top = levels.pop().and_then(|mut l| l.pop()).unwrap_or_default();
    let mut remainders = vec![top];
    for level in levels.iter().rev() {
        remainders = level
            .iter()
            .enumerate()
            .map(|(i, node)| &remainders[i / 2] % node.square())
            .collect();
    }
    remainders
        .iter()
        .zip(moduli)
        .enumerate()
        .filter(|(_, (r, n))| *n > &1u32 && (*r / *n).gcd(*n) != 1u32)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_moduli_that_share_a_prime() {
        let p = |x: u64| Natural::from(x);
        // 101·103 and 101·107 share 101; 109·113 and 127·131 share nothing; 137·139 twice.
        let moduli = vec![
            p(101 * 103),
            p(109 * 113),
            p(101 * 107),
            p(127 * 131),
            p(137 * 139),
            p(137 * 139),
        ];
        let found = shared_primes(&moduli);
        assert_eq!(
            found,
            vec![
                SharedPrime { index: 0, other: 2 },
                SharedPrime { index: 2, other: 0 },
                SharedPrime { index: 4, other: 5 },
                SharedPrime { index: 5, other: 4 },
            ]
        );
        assert!(shared_primes(&moduli[..2]).is_empty());
        assert!(shared_primes(&moduli[..1]).is_empty());
    }
}
