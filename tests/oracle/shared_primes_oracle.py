#!/usr/bin/env python3
"""Oracle for keyportal's shared-prime scan: plain pairwise gcd, no batch GCD.

Usage: shared_primes_oracle.py OUT_DIR N

Writes OUT_DIR/bulk.txt (N keys from ../shared/keys/gen_bulk.py, whose RSA moduli come from a
small prime pool), OUT_DIR/bulk_sharing.txt (the 1-based line numbers of bulk.txt whose RSA
modulus shares a prime with another line's, by pairwise gcd) and OUT_DIR/independent.txt
(200 RSA-2048 keys from independent random primes, which share nothing).
"""
import base64, os, random, struct, subprocess, sys

import gmpy2

HERE = os.path.dirname(os.path.abspath(__file__))
GEN_BULK = os.environ.get("GEN_BULK", os.path.join(HERE, "..", "..", "..", "shared", "keys", "gen_bulk.py"))


def fields(line):
    blob = base64.b64decode(line.split()[1])
    out, at = [], 0
    while at < len(blob):
        (size,) = struct.unpack(">I", blob[at:at + 4])
        out.append(blob[at + 4:at + 4 + size])
        at += 4 + size
    return out


def mpint(n):
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if b[0] & 0x80:
        b = b"\x00" + b
    return struct.pack(">I", len(b)) + b


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    bulk = subprocess.run([sys.executable, GEN_BULK, str(n)], check=True, capture_output=True,
                          text=True).stdout.splitlines()
    moduli = [(i + 1, gmpy2.mpz(int.from_bytes(fields(l)[2], "big")))
              for i, l in enumerate(bulk) if l.startswith("ssh-rsa ")]
    # For each modulus, the gcd with every other one until one is above 1 (a modulus that shares
    # nothing is compared with all the others).
    sharing = set()
    for a, (line, n) in enumerate(moduli):
        if line in sharing:
            continue
        for b, (other_line, m) in enumerate(moduli):
            if a != b and gmpy2.gcd(n, m) != 1:
                sharing.add(line)
                sharing.add(other_line)
                break
    with open(os.path.join(out, "bulk.txt"), "w") as f:
        f.write("\n".join(bulk) + "\n")
    with open(os.path.join(out, "bulk_sharing.txt"), "w") as f:
        f.write("".join(f"{i}\n" for i in sorted(sharing)))
    rng = random.Random(15)
    with open(os.path.join(out, "independent.txt"), "w") as f:
        for i in range(200):
            p, q = (int(gmpy2.next_prime(rng.getrandbits(1024) | (3 << 1022))) for _ in range(2))
            blob = struct.pack(">I", 7) + b"ssh-rsa" + mpint(65537) + mpint(p * q)
            f.write(f"ssh-rsa {base64.b64encode(blob).decode()} independent-{i}\n")
    print(f"{len(moduli)} RSA moduli, {len(sharing)} share a prime", file=sys.stderr)


if __name__ == "__main__":
    main()
