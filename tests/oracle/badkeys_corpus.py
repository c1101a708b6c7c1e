#!/usr/bin/env python3
# badkeys_corpus.py: a labeled corpus of SSH public keys for keyportal's computed RSA checks,
# with the `badkeys` package (PyPI, 0.0.21) as the independent oracle.
#
# Usage: badkeys_corpus.py OUT_DIR [N_ORDINARY]   (N_ORDINARY defaults to 10000)
#
# Builds RSA keys that are broken on purpose (small prime factor, primes close enough for
# Fermat, ROCA-structured primes; deterministic seed, gmpy2 primes) plus near misses just past
# each edge, adds N_ORDINARY keys from the project's ../../../shared/keys/gen_bulk.py (all of
# its lines: ed25519, ecdsa, rsa), shuffles them deterministically and writes
#   OUT_DIR/keys.txt        one `TYPE BASE64 k<index>` line per key,
#   OUT_DIR/expected.jsonl  one {"reasons": [...]} per line, same order; [] = ordinary.
# Every label is badkeys' verdict: badkeys.checks.checkrsa(n, e=e, checks=[the checks
# "fermat", "roca", "smallfactors" in badkeys' own order]) on RSA keys, reasons renamed to
# keyportal's `fermat`, `roca`, `small_factor`; non-RSA keys are ordinary. The script exits
# non-zero if a key built to be broken is not flagged with its intended reason, if a near
# miss is flagged, or if a built modulus is not 2048..16384 bits.
# Environment: GEN_BULK (path of gen_bulk.py), GEN_BULK_SEED (passed as --seed: the ordinary
# keys become deterministic too, but gen_bulk's seeded RSA prime pool is much slower).
# Needs: badkeys==0.0.21 (brings gmpy2 and cryptography; gen_bulk.py uses cryptography too).
import base64
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time

import gmpy2
from badkeys.checks import checkrsa, defaultchecks

SEED = 20261205
# badkeys check name -> keyportal reason; checks run in badkeys' own (defaultchecks) order.
REASON = {"smallfactors": "small_factor", "fermat": "fermat", "roca": "roca"}
ORACLE_CHECKS = [c for c in defaultchecks if c in REASON]
FERMAT_TRIES = 100  # badkeys.rsakeys.fermat: a = isqrt(n) .. isqrt(n) + 100 are tried
SMALL_PRIME_MAX = 65537  # badkeys.rsakeys.smallfactors.MAX_PRIME
MIN_BITS, MAX_BITS = 2048, 16384
HERE = os.path.dirname(os.path.abspath(__file__))
GEN_BULK = os.environ.get("GEN_BULK") or os.path.normpath(
    os.path.join(HERE, "..", "..", "..", "shared", "keys", "gen_bulk.py"))

rng = random.Random(SEED)


def fail(msg):
    sys.exit(f"badkeys_corpus.py: FAILED: {msg}")


def verdict(n, e):
    """badkeys' reasons for the RSA key (n, e), in badkeys' order; [] if none."""
    if n.bit_length() == 0:
        return []
    return [REASON[c] for c in checkrsa(n, e=e, checks=ORACLE_CHECKS)]


# --- OpenSSH wire format -------------------------------------------------------------------

def sstr(b):
    return struct.pack(">I", len(b)) + b


def mpint(x):
    b = x.to_bytes((x.bit_length() + 7) // 8, "big")
    if b and b[0] & 0x80:
        b = b"\x00" + b
    return sstr(b)


def rsa_blob(n, e):
    return sstr(b"ssh-rsa") + mpint(e) + mpint(n)


def parse_rsa_blob(blob):
    fields, at = [], 0
    while at < len(blob):
        (size,) = struct.unpack(">I", blob[at:at + 4])
        fields.append(blob[at + 4:at + 4 + size])
        at += 4 + size
    if at != len(blob) or len(fields) != 3 or fields[0] != b"ssh-rsa":
        fail(f"unexpected ssh-rsa blob from gen_bulk ({len(fields)} fields)")
    return int.from_bytes(fields[2], "big"), int.from_bytes(fields[1], "big")  # n, e


# --- primes --------------------------------------------------------------------------------

def prime(bits, mod3_is_2=False):
    """A random prime of exactly `bits` bits with the top two bits set (so p*q has 2*bits)."""
    while True:
        p = int(gmpy2.next_prime(rng.getrandbits(bits) | (3 << (bits - 2))))
        if p.bit_length() == bits and (not mod3_is_2 or p % 3 == 2):
            return p


def sized_cofactor(bits, small, kind="prime"):
    """Q with small * Q of exactly `bits` bits: a prime ("prime"), a product of two primes of
    about equal size ("two_primes"), or any odd number that is not prime ("odd")."""
    lo = -(-(1 << (bits - 1)) // small)
    hi = ((1 << bits) - 1) // small
    while True:
        if kind == "two_primes":
            q1 = prime((hi.bit_length() + 1) // 2)
            q = q1 * int(gmpy2.next_prime(rng.randrange(-(-lo // q1), hi // q1)))
        else:
            q = rng.randrange(lo, hi) | 1
            if kind == "prime":
                q = int(gmpy2.next_prime(q))
            elif gmpy2.is_prime(q):
                continue
        if (small * q).bit_length() == bits:
            return q


SIZES = (2048, 3072, 4096)


# --- small factors -------------------------------------------------------------------------

def small_factor_keys():
    """n = p * Q with p a prime <= 65537. Q is a large prime for the 2048-bit keys and a few
    larger ones (a ~4080-bit next_prime takes seconds), else two primes or any odd number:
    badkeys' smallfactors flags all of them (subtests "valid" / "corrupt")."""
    below = set()
    while len(below) < 6:
        below.add(int(gmpy2.next_prime(rng.randrange(7, SMALL_PRIME_MAX - 20))))
    below = sorted(below)
    cases = [(3, 2048, "prime"), (5, 2048, "prime"), (7, 2048, "prime"), (257, 2048, "prime"),
             (65521, 2048, "prime"), (SMALL_PRIME_MAX, 2048, "prime"),
             (below[0], 2048, "prime"), (below[1], 2048, "prime"),
             (3, 3072, "prime"), (SMALL_PRIME_MAX, 4096, "prime"),
             (below[2], 3072, "two_primes"), (below[3], 4096, "two_primes"),
             (below[4], 3072, "two_primes"), (below[5], 4096, "two_primes"),
             (5, 4096, "two_primes"), (SMALL_PRIME_MAX, 3072, "two_primes"),
             (3, 2048, "odd"), (SMALL_PRIME_MAX, 3072, "odd"), (11, 4096, "odd"),
             (3 * SMALL_PRIME_MAX, 2048, "prime"),  # two small factors
             (25, 4096, "two_primes")]  # a square of a small prime
    out = []
    for i, (p, bits, kind) in enumerate(cases):
        out.append((p * sized_cofactor(bits, p, kind), 3 if i % 4 == 3 else 65537, "small_factor"))
    # Near misses: the smallest primes above badkeys' bound are not looked for.
    for i, p in enumerate((65539, 65543, 131071)):
        out.append((p * sized_cofactor(SIZES[i], p, "two_primes"), 65537, None))
    return out


# --- Fermat --------------------------------------------------------------------------------

def fermat_steps(p, q):
    """How many increments of a from isqrt(n) badkeys' fermat needs (found iff <= 100)."""
    return (p + q) // 2 - int(gmpy2.isqrt(p * q))


def fermat_pair(bits, steps):
    """Primes p < q of bits/2 bits whose product Fermat factors after exactly `steps` steps.

    (p+q)/2 - sqrt(pq) = (sqrt q - sqrt p)^2 / 2; aiming at steps - 1/2 for it puts
    (p+q)/2 - isqrt(pq) at `steps` whatever next_prime adds (that moves it by ~2^-500)."""
    d = 2 * steps - 1
    while True:
        p = prime(bits // 2)
        q = int(gmpy2.next_prime(p + 2 * int(gmpy2.isqrt(p * d)) + d))
        if (p * q).bit_length() == bits and fermat_steps(p, q) == steps:
            return p, q


def fermat_keys():
    out = []
    # A perfect square (p = q): badkeys' fermat flags it (subtest "square").
    p = prime(1024)
    out.append((p * p, 65537, "fermat"))
    # Tiny gaps: q is the next prime after p plus a small random offset.
    for i in range(6):
        bits = SIZES[i % 3]
        while True:
            p = prime(bits // 2)
            q = int(gmpy2.next_prime(p + rng.randrange(2, 1 << rng.choice((8, 32, 100, 200)))))
            if (p * q).bit_length() == bits:
                break
        out.append((p * q, (65537, 3)[i % 2], "fermat"))
    # Gaps sized to need exactly `steps` Fermat steps: up to the edge (100 is the last found)...
    for i, steps in enumerate((1, 2, 37, 99, 100, 100, 100, 1 + rng.randrange(100),
                               1 + rng.randrange(100), 50, 75, 90, 98)):
        bits = SIZES[i % 3]
        p, q = fermat_pair(bits, steps)
        out.append((p * q, 65537 if i % 3 else 3, "fermat"))
    # ... and just past it: near misses, ordinary for badkeys.
    for i, steps in enumerate((101, 101, 101, 102, 150, 1000)):
        bits = SIZES[i % 3]
        p, q = fermat_pair(bits, steps)
        out.append((p * q, 65537, None))
    return out


# --- ROCA ----------------------------------------------------------------------------------

def primorial(count):
    m, p = 1, 1
    for _ in range(count):
        p = int(gmpy2.next_prime(p))
        m *= p
    return m


def roca_prime(half, m):
    """p = k*M + (65537^a mod M), of `half` bits and >= sqrt(2) * 2^(half-1)."""
    lo = int(gmpy2.isqrt(1 << (2 * half - 1))) + 1
    hi = (1 << half) - 1
    while True:
        r = int(gmpy2.powmod(65537, rng.randrange(0, 1 << 62), m))
        k = rng.randrange(-(-(lo - r) // m), (hi - r) // m + 1)
        p = k * m + r
        if lo <= p <= hi and gmpy2.is_prime(p):
            return p


def roca_keys():
    out = []
    m_small, m_large = primorial(126), primorial(225)  # Infineon: 2048..3936 / 3968..4096
    for bits, count in ((2048, 4), (3072, 3), (4096, 3)):
        m = m_large if bits >= 3968 else m_small
        for j in range(count):
            p, q = roca_prime(bits // 2, m), roca_prime(bits // 2, m)
            out.append((p * q, 3 if j == 1 else 65537, "roca"))
    # Near misses: only one of the two primes has the structure.
    for bits in (2048, 4096):
        m = m_large if bits >= 3968 else m_small
        out.append((roca_prime(bits // 2, m) * prime(bits // 2), 65537, None))
    return out


# --- clean keys with e = 3 -------------------------------------------------------------------

def e3_keys():
    out = []
    for bits in SIZES:
        p, q = prime(bits // 2, mod3_is_2=True), prime(bits // 2, mod3_is_2=True)
        out.append((p * q, 3, None))
    return out


def built_records():
    """The broken keys and near misses, each checked against its intended badkeys verdict."""
    records = []  # (type, blob, reasons, origin)
    for n, e, intended in small_factor_keys() + fermat_keys() + roca_keys() + e3_keys():
        bits = n.bit_length()
        if not MIN_BITS <= bits <= MAX_BITS or n % 2 == 0:
            fail(f"built {intended or 'near-miss'} modulus has {bits} bits (or is even)")
        found = verdict(n, e)
        if intended is not None and intended not in found:
            fail(f"a key built as {intended} ({bits} bits, e={e}) gets badkeys verdict {found}")
        if intended is None and found:
            fail(f"a near miss / clean key ({bits} bits, e={e}) is flagged by badkeys: {found}")
        records.append(("ssh-rsa", rsa_blob(n, e), found, "built"))
    return records


# --- main ----------------------------------------------------------------------------------

def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: badkeys_corpus.py OUT_DIR [N_ORDINARY]")
    out_dir = sys.argv[1]
    n_ordinary = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    t0 = time.time()

    # gen_bulk.py builds its RSA prime pool in the background while the broken keys are made.
    cmd = [sys.executable, GEN_BULK, str(n_ordinary), "--no-comment"]
    if os.environ.get("GEN_BULK_SEED"):
        cmd += ["--seed", os.environ["GEN_BULK_SEED"]]
    gen = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        records = built_records()
    except BaseException:
        try:
            os.killpg(gen.pid, signal.SIGKILL)  # gen_bulk.py and its pool workers
        except ProcessLookupError:
            pass
        raise
    t_built = time.time()

    bulk = gen.communicate()[0].splitlines()
    if gen.returncode != 0:
        fail(f"{' '.join(cmd)} exited with {gen.returncode}")
    if len(bulk) != n_ordinary:
        fail(f"gen_bulk.py wrote {len(bulk)} lines, {n_ordinary} asked for")
    t_bulk = time.time()
    for line in bulk:
        ktype, b64 = line.split()[:2]
        blob = base64.b64decode(b64)
        found = verdict(*parse_rsa_blob(blob)) if ktype == "ssh-rsa" else []
        records.append((ktype, blob, found, "bulk"))
    t_oracle = time.time()

    random.Random(SEED + 1).shuffle(records)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "keys.txt"), "w") as keys, \
            open(os.path.join(out_dir, "expected.jsonl"), "w") as expected:
        for i, (ktype, blob, found, _) in enumerate(records):
            keys.write(f"{ktype} {base64.b64encode(blob).decode()} k{i}\n")
            expected.write(json.dumps({"reasons": found}) + "\n")

    counts = {}
    for _, _, found, origin in records:
        for r in found or ["ordinary"]:
            counts[f"{r} ({origin})"] = counts.get(f"{r} ({origin})", 0) + 1
    multi = sum(1 for r in records if len(r[2]) > 1)
    print(f"badkeys_corpus: {len(records)} keys in {out_dir}; "
          f"built+checked {t_built - t0:.1f}s, gen_bulk done {t_bulk - t0:.1f}s, "
          f"oracle on bulk {t_oracle - t_bulk:.1f}s, total {time.time() - t0:.1f}s",
          file=sys.stderr)
    for k in sorted(counts):
        print(f"badkeys_corpus:   {k}: {counts[k]}", file=sys.stderr)
    print(f"badkeys_corpus:   keys with more than one reason: {multi}", file=sys.stderr)


if __name__ == "__main__":
    main()
