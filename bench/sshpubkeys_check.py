"""Validates every line of a file with sshpubkeys (strict mode) and prints one SHA256
fingerprint per valid key, like `ssh-keygen -l -E sha256` does. Used by bench/compare.sh."""
import sys
import time

from sshpubkeys import SSHKey

t0 = time.perf_counter()
out = []
bad = 0
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        key = SSHKey(line, strict=True)
        try:
            key.parse()
            out.append(key.hash_sha256())
        except Exception as e:  # sshpubkeys raises many exception types; any of them is a rejection here
            bad += 1
            print(f"rejected: {type(e).__name__}: {e}", file=sys.stderr)
sys.stdout.write("\n".join(out) + "\n")
print(f"sshpubkeys: {len(out)} valid, {bad} rejected in {time.perf_counter() - t0:.2f}s", file=sys.stderr)
