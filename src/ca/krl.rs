//! OpenSSH key revocation lists (PROTOCOL.krl): our writer and a strict reader.
//!
//! sshd refuses *every* public key when its `RevokedKeys` file fails to parse, so the writer
//! refuses anything OpenSSH 9.2's parser would reject (serial 0, reversed ranges, NUL in
//! strings, extension sections), and the reader rejects all of that too, so a KRL fetched from
//! elsewhere can be vetted before it is installed. Signatures (section 4) are for transport
//! only: 9.2 rejects a whole KRL whose embedded signature fails and 9.4+ ignores them, so
//! [`verify`] hands back the unsigned prefix, which is what gets installed.
//!
//! Everything here is pure: bytes in, bytes or verdicts out.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use signature::{Signer, Verifier};
use ssh_key::{Algorithm, Certificate, PrivateKey, PublicKey, Signature};

/// The first eight bytes of every KRL, `"SSHKRL\n\0"`, written raw (not as a string).
pub const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
/// The only format version there is; OpenSSH rejects any other.
const FORMAT_VERSION: u32 = 1;

const SECTION_CERTIFICATES: u8 = 1;
const SECTION_EXPLICIT_KEY: u8 = 2;
const SECTION_FINGERPRINT_SHA1: u8 = 3;
const SECTION_SIGNATURE: u8 = 4;
const SECTION_FINGERPRINT_SHA256: u8 = 5;

const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
const CERT_KEY_ID: u8 = 0x23;

/// OpenSSH's `SSHBUF_MAX_BIGNUM`: a bitmap mpint holds at most 16384 bits (plus a leading 0).
const MAX_BITMAP_BYTES: usize = 2048;

/// Largest KRL we read or write, so hostile input cannot exhaust memory.
pub const MAX_KRL_BYTES: usize = 64 << 20;
/// Most revocations (serial ranges after merging, key ids, keys, hashes) one KRL may hold.
pub const MAX_ENTRIES: usize = 1 << 20;
/// Most revocation items (list serials, ranges, bitmap runs, ids, keys, hashes) read from one
/// KRL, merged or not: bounds the work of a file that repeats itself.
const MAX_ITEMS_READ: usize = 1 << 24;

const ED25519_NAME: &[u8] = b"ssh-ed25519";
const ED25519_SIGNATURE_LEN: usize = 64;

/// Why a KRL could not be written, read or trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrlError {
    #[error("not a KRL: it does not start with \"SSHKRL\\n\\0\"")]
    BadMagic,
    #[error("unsupported KRL format version {0} (only 1 exists)")]
    UnsupportedFormatVersion(u32),
    #[error("KRL truncated in the {what}")]
    Truncated { what: &'static str },
    #[error("unknown KRL section type {0}")]
    UnknownSection(u8),
    #[error("unknown KRL certificate subsection type {0:#04x}")]
    UnknownCertSubsection(u8),
    #[error("unparsed bytes at the end of the {what}")]
    TrailingBytes { what: &'static str },
    #[error("serial 0 cannot be revoked (OpenSSH rejects the whole KRL)")]
    SerialZero,
    #[error("serial range {lo}-{hi} is reversed")]
    SerialRangeReversed { lo: u64, hi: u64 },
    #[error("serial bitmap is negative or longer than 2048 bytes")]
    BadBitmap,
    #[error("serial bitmap runs past serial 2^64-1")]
    BitmapWraps,
    #[error("{what} fingerprint is {len} bytes, not {want}")]
    BadHashLength {
        what: &'static str,
        len: usize,
        want: usize,
    },
    #[error("the comment contains a NUL byte")]
    CommentContainsNul,
    #[error("a key id contains a NUL byte")]
    KeyIdContainsNul,
    #[error("the {what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("a CA key is not a plain public key in OpenSSH's canonical encoding")]
    BadCaKey,
    #[error("an explicit key is not a plain public key in OpenSSH's canonical encoding")]
    BadExplicitKey,
    #[error("a non-signature section follows a signature")]
    SectionAfterSignature,
    #[error("a signature section's key is not a plain public key")]
    BadSignerKey,
    #[error("unsupported KRL signer key type {0} (only ssh-ed25519)")]
    UnsupportedSigner(String),
    #[error("a KRL signature does not verify")]
    BadSignature,
    #[error("the KRL is signed more than once by the same key")]
    DuplicateSigner,
    #[error("the key that would sign or vouch for the KRL is revoked by it")]
    SignerRevoked,
    #[error("the KRL carries no signature")]
    NotSigned,
    #[error("the KRL is not signed by a trusted key")]
    UntrustedSigner,
    #[error("the KRL is too large (over {MAX_KRL_BYTES} bytes or {MAX_ENTRIES} entries)")]
    TooLarge,
    #[error("signing the KRL failed")]
    Signing,
}

/// What a KRL revokes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Krl {
    /// `krl_version`: OpenSSH never checks it; consumers use it to refuse going backwards.
    pub version: u64,
    /// Unix seconds; written as given (no clock here).
    pub generated_at: u64,
    pub comment: String,
    pub certificates: Vec<CertificateSection>,
    /// Plain public key wire blobs, matched byte for byte against OpenSSH's encoding.
    pub explicit_keys: Vec<Vec<u8>>,
    /// SHA-256 of plain public key wire blobs.
    pub sha256_fingerprints: Vec<[u8; 32]>,
    /// SHA-1 of plain public key wire blobs. The portal never adds these; they are read (and
    /// written back, so a re-encoded KRL never silently drops a revocation).
    pub sha1_fingerprints: Vec<[u8; 20]>,
}

/// Certificates revoked under one CA (or under every CA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateSection {
    /// CA public key wire blob; empty is the wildcard section, which applies to every CA.
    pub ca_key: Vec<u8>,
    /// Inclusive serial ranges; a single serial is `(n, n)`.
    pub serials: Vec<(u64, u64)>,
    pub key_ids: Vec<String>,
}

/// A signature section as found in a KRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KrlSignature {
    /// Signer public key wire blob.
    pub signer: Vec<u8>,
    /// SSH signature blob (`string alg || string sig`).
    pub signature: Vec<u8>,
}

/// A strictly parsed KRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKrl {
    /// The revocations, canonical: one section per CA sorted by CA blob (wildcard first),
    /// merged serial ranges, sorted and deduplicated lists.
    pub krl: Krl,
    /// Length of the part before the first signature section (the whole input if unsigned):
    /// itself a complete KRL, and what gets installed for sshd.
    pub unsigned_len: usize,
    /// Signature sections, in file order; each one verified against its own key.
    pub signatures: Vec<KrlSignature>,
}

impl Krl {
    /// Bytes of an unsigned KRL in canonical form: one certificate section per CA (sorted by
    /// CA blob, wildcard first), merged and sorted serial ranges (single serials in
    /// SERIAL_LIST subsections, runs in SERIAL_RANGE ones), sorted and deduplicated key ids,
    /// keys and fingerprints, no empty sections, and never section 255 or subsection 0x39
    /// (OpenSSH 9.2 rejects them). Refuses what would make OpenSSH reject the whole file
    /// (serial 0, reversed ranges, NUL in strings) and keys that could never match.
    pub fn to_bytes(&self) -> Result<Vec<u8>, KrlError> {
        if self.comment.as_bytes().contains(&0) {
            return Err(KrlError::CommentContainsNul);
        }
        let mut entries = 0usize;
        let mut by_ca: BTreeMap<&[u8], (SerialSet, BTreeSet<&str>)> = BTreeMap::new();
        for section in &self.certificates {
            if !section.ca_key.is_empty() && !is_canonical_plain_key(&section.ca_key) {
                return Err(KrlError::BadCaKey);
            }
            let (serials, ids) = by_ca.entry(&section.ca_key).or_default();
            for &(lo, hi) in &section.serials {
                check_range(lo, hi)?;
                serials.insert(lo, hi);
            }
            for id in &section.key_ids {
                if id.as_bytes().contains(&0) {
                    return Err(KrlError::KeyIdContainsNul);
                }
                ids.insert(id);
            }
        }
        let mut explicit = BTreeSet::new();
        for key in &self.explicit_keys {
            if !is_canonical_plain_key(key) {
                return Err(KrlError::BadExplicitKey);
            }
            explicit.insert(key.as_slice());
        }
        let sha1: BTreeSet<&[u8; 20]> = self.sha1_fingerprints.iter().collect();
        let sha256: BTreeSet<&[u8; 32]> = self.sha256_fingerprints.iter().collect();
        for (serials, ids) in by_ca.values() {
            entries = entries
                .saturating_add(serials.len())
                .saturating_add(ids.len());
        }
        entries = entries
            .saturating_add(explicit.len())
            .saturating_add(sha1.len())
            .saturating_add(sha256.len());
        if entries > MAX_ENTRIES {
            return Err(KrlError::TooLarge);
        }

        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.generated_at.to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes()); // flags: none defined
        put_string(&mut out, b"")?; // reserved
        put_string(&mut out, self.comment.as_bytes())?;

        for (ca, (serials, ids)) in &by_ca {
            if serials.is_empty() && ids.is_empty() {
                continue;
            }
            let mut section = Vec::new();
            put_string(&mut section, ca)?;
            put_string(&mut section, b"")?; // reserved
            let mut list = Vec::new();
            for (lo, hi) in serials.iter() {
                if lo == hi {
                    list.extend_from_slice(&lo.to_be_bytes());
                    continue;
                }
                if !list.is_empty() {
                    section.push(CERT_SERIAL_LIST);
                    put_string(&mut section, &list)?;
                    list.clear();
                }
                let mut range = [0u8; 16];
                range[..8].copy_from_slice(&lo.to_be_bytes());
                range[8..].copy_from_slice(&hi.to_be_bytes());
                section.push(CERT_SERIAL_RANGE);
                put_string(&mut section, &range)?;
            }
            if !list.is_empty() {
                section.push(CERT_SERIAL_LIST);
                put_string(&mut section, &list)?;
            }
            if !ids.is_empty() {
                let mut sub = Vec::new();
                for id in ids {
                    put_string(&mut sub, id.as_bytes())?;
                }
                section.push(CERT_KEY_ID);
                put_string(&mut section, &sub)?;
            }
            out.push(SECTION_CERTIFICATES);
            put_string(&mut out, &section)?;
        }
        put_blob_section(&mut out, SECTION_EXPLICIT_KEY, explicit.iter().copied())?;
        put_blob_section(
            &mut out,
            SECTION_FINGERPRINT_SHA1,
            sha1.iter().map(|h| &h[..]),
        )?;
        put_blob_section(
            &mut out,
            SECTION_FINGERPRINT_SHA256,
            sha256.iter().map(|h| &h[..]),
        )?;
        if out.len() > MAX_KRL_BYTES {
            return Err(KrlError::TooLarge);
        }
        Ok(out)
    }

    /// Strict parse: rejects everything OpenSSH 9.2's `ssh_krl_from_blob` rejects (bad magic
    /// or format version, unknown sections including 255, unknown certificate subsections
    /// including 0x39, serial 0, reversed ranges, bitmaps that are negative, too long or
    /// wrap, wrong hash lengths, unparsed bytes in a section, truncation, a non-signature
    /// section after a signature, a signature that fails against its own key, one key signing
    /// twice, every signer revoked by the KRL itself). Stricter than 9.2 on purpose: CA keys
    /// must be canonical plain keys, comment and key ids UTF-8, signers Ed25519, and the size
    /// is capped ([`MAX_KRL_BYTES`], [`MAX_ENTRIES`]).
    pub fn parse(bytes: &[u8]) -> Result<ParsedKrl, KrlError> {
        if bytes.len() > MAX_KRL_BYTES {
            return Err(KrlError::TooLarge);
        }
        if !bytes.starts_with(MAGIC) {
            return Err(KrlError::BadMagic);
        }
        let mut r = Reader::new(bytes, MAGIC.len());
        let format = r.u32("header")?;
        if format != FORMAT_VERSION {
            return Err(KrlError::UnsupportedFormatVersion(format));
        }
        let version = r.u64("header")?;
        let generated_at = r.u64("header")?;
        let _flags = r.u64("header")?; // none defined; OpenSSH ignores them too
        r.string("header")?; // reserved
        let comment = r.string("comment")?;
        if comment.contains(&0) {
            return Err(KrlError::CommentContainsNul);
        }
        let comment = utf8(comment, "comment")?;

        let mut acc = Accumulator::default();
        let mut unsigned_len = None;
        let mut signatures = Vec::new();
        let mut signed_lens = Vec::new();
        while !r.is_empty() {
            let start = r.pos();
            let kind = r.u8("section type")?;
            if kind == SECTION_SIGNATURE {
                let signer = r.string("signature section")?;
                signed_lens.push(r.pos());
                let signature = r.string("signature section")?;
                unsigned_len.get_or_insert(start);
                signatures.push(KrlSignature {
                    signer: signer.to_vec(),
                    signature: signature.to_vec(),
                });
                continue;
            }
            let data = r.string("section")?;
            if unsigned_len.is_some() {
                return Err(KrlError::SectionAfterSignature);
            }
            match kind {
                SECTION_CERTIFICATES => acc.certificates(data)?,
                SECTION_EXPLICIT_KEY => acc.explicit_keys(data)?,
                SECTION_FINGERPRINT_SHA1 => acc.sha1(data)?,
                SECTION_FINGERPRINT_SHA256 => acc.sha256(data)?,
                other => return Err(KrlError::UnknownSection(other)),
            }
        }
        let krl = acc.finish(version, generated_at, comment);

        let mut signers: Vec<Vec<u8>> = Vec::new();
        for (sig, &signed_len) in signatures.iter().zip(&signed_lens) {
            let signed = bytes.get(..signed_len).ok_or(KrlError::Truncated {
                what: "signature section",
            })?;
            let signer = verify_signature(&sig.signer, &sig.signature, signed)?;
            if signers.contains(&signer) {
                return Err(KrlError::DuplicateSigner);
            }
            signers.push(signer);
        }
        if !signers.is_empty() && signers.iter().all(|s| krl.revokes_plain(s)) {
            return Err(KrlError::SignerRevoked);
        }
        Ok(ParsedKrl {
            krl,
            unsigned_len: unsigned_len.unwrap_or(bytes.len()),
            signatures,
        })
    }

    /// Does this KRL revoke this plain public key (wire blob)? As OpenSSH's
    /// `ssh_krl_check_key`: by explicit blob, SHA-1 or SHA-256 of the key's canonical
    /// encoding. A certificate blob is checked as [`Krl::revokes_certificate`] would.
    pub fn revokes_key(&self, plain_blob: &[u8]) -> bool {
        if let Ok(key) = PublicKey::from_bytes(plain_blob) {
            return match key.to_bytes() {
                Ok(canonical) => self.revokes_plain(&canonical),
                Err(_) => true, // cannot tell: fail closed
            };
        }
        if let Ok(cert) = Certificate::from_bytes(plain_blob) {
            return self.revokes_certificate(&cert);
        }
        self.revokes_plain(plain_blob)
    }

    /// Does this KRL revoke this certificate? As OpenSSH's `ssh_krl_check_key`: its subject
    /// key as a plain key, then its serial (never serial 0) and key id under its CA's section
    /// and the wildcard section, then its CA key as a plain key.
    pub fn revokes_certificate(&self, cert: &Certificate) -> bool {
        let (Some(subject), Some(ca)) = (
            key_blob(cert.public_key().clone()),
            key_blob(cert.signature_key().clone()),
        ) else {
            return true; // cannot tell: fail closed
        };
        if self.revokes_plain(&subject) {
            return true;
        }
        let serial = cert.serial();
        let key_id = cert.key_id();
        let by_section = self.certificates.iter().any(|section| {
            let applies = section.ca_key.is_empty()
                || section.ca_key == ca
                || canonical_key(&section.ca_key).is_some_and(|c| c == ca);
            applies
                && (section.key_ids.iter().any(|id| id == key_id)
                    || (serial != 0
                        && section
                            .serials
                            .iter()
                            .any(|&(lo, hi)| lo <= serial && serial <= hi)))
        });
        by_section || self.revokes_plain(&ca)
    }

    /// Plain-key revocation of an already canonical blob.
    fn revokes_plain(&self, blob: &[u8]) -> bool {
        if self.explicit_keys.iter().any(|k| k == blob) {
            return true;
        }
        if !self.sha256_fingerprints.is_empty() {
            let digest: [u8; 32] = Sha256::digest(blob).into();
            if self.sha256_fingerprints.contains(&digest) {
                return true;
            }
        }
        !self.sha1_fingerprints.is_empty() && self.sha1_fingerprints.contains(&sha1(blob))
    }
}

/// Appends a SIGNATURE section (type 4: string signer key blob, string signature) made by
/// `ca` over every byte from the magic through the signer key string, as PROTOCOL.krl says.
/// `unsigned` must parse strictly; it may already carry signatures by other keys.
pub fn sign(unsigned: &[u8], ca: &PrivateKey) -> Result<Vec<u8>, KrlError> {
    let algorithm = ca.algorithm();
    if algorithm != Algorithm::Ed25519 {
        return Err(KrlError::UnsupportedSigner(algorithm.as_str().to_owned()));
    }
    let parsed = Krl::parse(unsigned)?;
    let signer = ca
        .public_key()
        .to_bytes()
        .map_err(|_| KrlError::BadSignerKey)?;
    if parsed.signatures.iter().any(|s| s.signer == signer) {
        return Err(KrlError::DuplicateSigner);
    }
    if parsed.krl.revokes_plain(&signer) {
        return Err(KrlError::SignerRevoked);
    }
    let mut out = unsigned.to_vec();
    out.push(SECTION_SIGNATURE);
    put_string(&mut out, &signer)?;
    let signature: Signature = ca.try_sign(&out).map_err(|_| KrlError::Signing)?;
    if signature.algorithm() != Algorithm::Ed25519
        || signature.as_bytes().len() != ED25519_SIGNATURE_LEN
    {
        return Err(KrlError::Signing);
    }
    let mut blob = Vec::new();
    put_string(&mut blob, ED25519_NAME)?;
    put_string(&mut blob, signature.as_bytes())?;
    put_string(&mut out, &blob)?;
    if out.len() > MAX_KRL_BYTES {
        return Err(KrlError::TooLarge);
    }
    Ok(out)
}

/// Parses strictly, requires at least one signature section (each must verify) and one made
/// by a key in `trusted` that the KRL does not itself revoke. Returns the revocations and the
/// unsigned prefix: the bytes to install for sshd (9.2 rejects a KRL whose embedded
/// signature it cannot verify, 9.4+ ignores them, so installed files carry none).
pub fn verify<'a>(bytes: &'a [u8], trusted: &[PublicKey]) -> Result<(Krl, &'a [u8]), KrlError> {
    let parsed = Krl::parse(bytes)?;
    if parsed.signatures.is_empty() {
        return Err(KrlError::NotSigned);
    }
    let trusted: Vec<Vec<u8>> = trusted.iter().filter_map(|k| k.to_bytes().ok()).collect();
    let vouched: Vec<&KrlSignature> = parsed
        .signatures
        .iter()
        .filter(|s| trusted.contains(&s.signer))
        .collect();
    if vouched.is_empty() {
        return Err(KrlError::UntrustedSigner);
    }
    if vouched.iter().all(|s| parsed.krl.revokes_plain(&s.signer)) {
        return Err(KrlError::SignerRevoked);
    }
    let prefix = bytes
        .get(..parsed.unsigned_len)
        .ok_or(KrlError::Truncated { what: "KRL" })?;
    Ok((parsed.krl, prefix))
}

/// Checks one signature section against its own key; returns the signer's blob. Ed25519
/// only, decoded as strictly as OpenSSH's `ssh_ed25519_verify` (type name, 64 bytes, nothing
/// after).
fn verify_signature(signer: &[u8], blob: &[u8], signed: &[u8]) -> Result<Vec<u8>, KrlError> {
    let key = PublicKey::from_bytes(signer).map_err(|_| KrlError::BadSignerKey)?;
    let algorithm = key.algorithm();
    if algorithm != Algorithm::Ed25519 {
        return Err(KrlError::UnsupportedSigner(algorithm.as_str().to_owned()));
    }
    let canonical = key.to_bytes().map_err(|_| KrlError::BadSignerKey)?;
    let mut r = Reader::new(blob, 0);
    let name = r.string("signature").map_err(|_| KrlError::BadSignature)?;
    let raw = r.string("signature").map_err(|_| KrlError::BadSignature)?;
    if name != ED25519_NAME || raw.len() != ED25519_SIGNATURE_LEN || !r.is_empty() {
        return Err(KrlError::BadSignature);
    }
    let signature =
        Signature::new(Algorithm::Ed25519, raw.to_vec()).map_err(|_| KrlError::BadSignature)?;
    key.key_data()
        .verify(signed, &signature)
        .map_err(|_| KrlError::BadSignature)?;
    Ok(canonical)
}

/// Collects a KRL's revocations while parsing, merging as OpenSSH does and counting entries.
#[derive(Default)]
struct Accumulator {
    /// Keyed by CA blob (empty: wildcard), so repeated sections for one CA merge.
    certs: BTreeMap<Vec<u8>, (SerialSet, BTreeSet<String>)>,
    explicit: BTreeSet<Vec<u8>>,
    sha1: BTreeSet<[u8; 20]>,
    sha256: BTreeSet<[u8; 32]>,
    /// Entries held now.
    live: usize,
    /// Items read so far, merged or not.
    read: usize,
}

impl Accumulator {
    /// Accounts for one item read that changed the held entry count from `before` to `after`.
    fn count(&mut self, before: usize, after: usize) -> Result<(), KrlError> {
        self.read = self.read.saturating_add(1);
        self.live = self.live.saturating_sub(before).saturating_add(after);
        if self.live > MAX_ENTRIES || self.read > MAX_ITEMS_READ {
            return Err(KrlError::TooLarge);
        }
        Ok(())
    }

    fn revoke_range(&mut self, ca: &[u8], lo: u64, hi: u64) -> Result<(), KrlError> {
        check_range(lo, hi)?;
        let (serials, _) = self.certs.entry(ca.to_vec()).or_default();
        let before = serials.len();
        serials.insert(lo, hi);
        let after = serials.len();
        self.count(before, after)
    }

    fn certificates(&mut self, data: &[u8]) -> Result<(), KrlError> {
        let mut r = Reader::new(data, 0);
        let ca = r.string("certificate section")?;
        r.string("certificate section")?; // reserved
        if !ca.is_empty() && !is_canonical_plain_key(ca) {
            return Err(KrlError::BadCaKey);
        }
        while !r.is_empty() {
            let kind = r.u8("certificate subsection")?;
            let mut sub = Reader::new(r.string("certificate subsection")?, 0);
            match kind {
                CERT_SERIAL_LIST => {
                    while !sub.is_empty() {
                        let serial = sub.u64("serial list")?;
                        self.revoke_range(ca, serial, serial)?;
                    }
                }
                CERT_SERIAL_RANGE => {
                    let lo = sub.u64("serial range")?;
                    let hi = sub.u64("serial range")?;
                    self.revoke_range(ca, lo, hi)?;
                }
                CERT_SERIAL_BITMAP => {
                    let offset = sub.u64("serial bitmap")?;
                    let bitmap = sub.string("serial bitmap")?;
                    for (lo, hi) in bitmap_runs(offset, bitmap)? {
                        self.revoke_range(ca, lo, hi)?;
                    }
                }
                CERT_KEY_ID => {
                    while !sub.is_empty() {
                        let id = sub.string("key id list")?;
                        if id.contains(&0) {
                            return Err(KrlError::KeyIdContainsNul);
                        }
                        let id = utf8(id, "key id")?;
                        let (_, ids) = self.certs.entry(ca.to_vec()).or_default();
                        let before = ids.len();
                        ids.insert(id);
                        let after = ids.len();
                        self.count(before, after)?;
                    }
                }
                other => return Err(KrlError::UnknownCertSubsection(other)),
            }
            if !sub.is_empty() {
                return Err(KrlError::TrailingBytes {
                    what: "certificate subsection",
                });
            }
        }
        Ok(())
    }

    /// Explicit keys are stored unparsed, as OpenSSH does: a blob that is no key never matches.
    fn explicit_keys(&mut self, data: &[u8]) -> Result<(), KrlError> {
        let mut r = Reader::new(data, 0);
        while !r.is_empty() {
            let key = r.string("explicit key section")?;
            let before = self.explicit.len();
            self.explicit.insert(key.to_vec());
            let after = self.explicit.len();
            self.count(before, after)?;
        }
        Ok(())
    }

    fn sha1(&mut self, data: &[u8]) -> Result<(), KrlError> {
        let mut r = Reader::new(data, 0);
        while !r.is_empty() {
            let hash = fixed::<20>(r.string("SHA1 section")?, "SHA1")?;
            let before = self.sha1.len();
            self.sha1.insert(hash);
            let after = self.sha1.len();
            self.count(before, after)?;
        }
        Ok(())
    }

    fn sha256(&mut self, data: &[u8]) -> Result<(), KrlError> {
        let mut r = Reader::new(data, 0);
        while !r.is_empty() {
            let hash = fixed::<32>(r.string("SHA256 section")?, "SHA256")?;
            let before = self.sha256.len();
            self.sha256.insert(hash);
            let after = self.sha256.len();
            self.count(before, after)?;
        }
        Ok(())
    }

    fn finish(self, version: u64, generated_at: u64, comment: String) -> Krl {
        Krl {
            version,
            generated_at,
            comment,
            certificates: self
                .certs
                .into_iter()
                .map(|(ca_key, (serials, ids))| CertificateSection {
                    ca_key,
                    serials: serials.iter().collect(),
                    key_ids: ids.into_iter().collect(),
                })
                .collect(),
            explicit_keys: self.explicit.into_iter().collect(),
            sha256_fingerprints: self.sha256.into_iter().collect(),
            sha1_fingerprints: self.sha1.into_iter().collect(),
        }
    }
}

/// The runs of set bits of a SERIAL_BITMAP subsection as serial ranges. The mpint rules are
/// OpenSSH's: not negative, at most 2048 bytes after an optional leading zero; leading zeros
/// are ignored; bit N (counted from the last byte's LSB) is serial `offset + N`.
fn bitmap_runs(offset: u64, mpint: &[u8]) -> Result<Vec<(u64, u64)>, KrlError> {
    if mpint.first().is_some_and(|b| b & 0x80 != 0)
        || mpint.len() > MAX_BITMAP_BYTES + 1
        || (mpint.len() == MAX_BITMAP_BYTES + 1 && mpint.first() != Some(&0))
    {
        return Err(KrlError::BadBitmap);
    }
    let start = mpint.iter().position(|&b| b != 0).unwrap_or(mpint.len());
    let bits = mpint.get(start..).unwrap_or_default();
    let Some(&top) = bits.first() else {
        return Ok(Vec::new());
    };
    // OpenSSH refuses a bitmap whose highest set bit lies past serial 2^64-1.
    let nbits = (bits.len() as u64 - 1) * 8 + u64::from(8 - top.leading_zeros());
    let last = offset.checked_add(nbits - 1).ok_or(KrlError::BitmapWraps)?;
    let mut runs = Vec::new();
    let mut open: Option<u64> = None;
    for (byte_index, &byte) in bits.iter().rev().enumerate() {
        for bit in 0..8u64 {
            let n = byte_index as u64 * 8 + bit;
            if n >= nbits {
                break;
            }
            let set = byte & (1 << bit) != 0;
            match (set, open) {
                (true, None) => open = Some(n),
                (false, Some(first)) => {
                    runs.push((offset + first, offset + n - 1));
                    open = None;
                }
                _ => {}
            }
        }
    }
    if let Some(first) = open {
        runs.push((offset + first, last));
    }
    Ok(runs)
}

/// OpenSSH's `ssh_krl_revoke_cert_by_serial_range` rule, fatal for the whole KRL there.
fn check_range(lo: u64, hi: u64) -> Result<(), KrlError> {
    if lo > hi {
        return Err(KrlError::SerialRangeReversed { lo, hi });
    }
    if lo == 0 {
        return Err(KrlError::SerialZero);
    }
    Ok(())
}

/// Disjoint, non-adjacent inclusive serial ranges keyed by their start.
#[derive(Debug, Default)]
struct SerialSet(BTreeMap<u64, u64>);

impl SerialSet {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(&lo, &hi)| (lo, hi))
    }

    /// Adds `lo..=hi` (`lo <= hi`), coalescing with overlapping or adjacent ranges.
    fn insert(&mut self, mut lo: u64, mut hi: u64) {
        if let Some((&plo, &phi)) = self.0.range(..=lo).next_back() {
            if phi.checked_add(1).is_none_or(|next| next >= lo) {
                lo = plo;
                hi = hi.max(phi);
                self.0.remove(&plo);
            }
        }
        while let Some((&slo, &shi)) = self.0.range(lo..).next() {
            if hi.checked_add(1).is_some_and(|next| slo > next) {
                break;
            }
            hi = hi.max(shi);
            self.0.remove(&slo);
        }
        self.0.insert(lo, hi);
    }
}

/// A bounds-checked cursor; every read names what it was reading for the error.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    fn pos(&self) -> usize {
        self.pos
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], KrlError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(KrlError::Truncated { what })?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(KrlError::Truncated { what })?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], KrlError> {
        fixed::<N>(self.take(N, what)?, what).map_err(|_| KrlError::Truncated { what })
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, KrlError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, KrlError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, KrlError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &'static str) -> Result<&'a [u8], KrlError> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| KrlError::Truncated { what })?;
        self.take(len, what)
    }
}

/// A hash of exactly `N` bytes, as OpenSSH's `blob_section` demands.
fn fixed<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N], KrlError> {
    bytes.try_into().map_err(|_| KrlError::BadHashLength {
        what,
        len: bytes.len(),
        want: N,
    })
}

fn utf8(bytes: &[u8], what: &'static str) -> Result<String, KrlError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| KrlError::NotUtf8 { what })
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), KrlError> {
    let len = u32::try_from(bytes.len()).map_err(|_| KrlError::TooLarge)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A section of strings (keys or hashes), omitted when there are none.
fn put_blob_section<'b>(
    out: &mut Vec<u8>,
    kind: u8,
    blobs: impl Iterator<Item = &'b [u8]>,
) -> Result<(), KrlError> {
    let mut section = Vec::new();
    for blob in blobs {
        put_string(&mut section, blob)?;
    }
    if !section.is_empty() {
        out.push(kind);
        put_string(out, &section)?;
    }
    Ok(())
}

/// The wire blob of a plain key, or `None` if ssh-key cannot encode it.
fn key_blob(key: ssh_key::public::KeyData) -> Option<Vec<u8>> {
    PublicKey::from(key).to_bytes().ok()
}

/// The canonical re-encoding of a plain public key blob, or `None` if it is not one.
fn canonical_key(blob: &[u8]) -> Option<Vec<u8>> {
    PublicKey::from_bytes(blob).ok()?.to_bytes().ok()
}

/// A blob OpenSSH would produce for a plain key: parses, and re-encodes to the same bytes
/// (OpenSSH matches explicit keys byte for byte against its own encoding).
fn is_canonical_plain_key(blob: &[u8]) -> bool {
    canonical_key(blob).is_some_and(|c| c == blob)
}

/// SHA-1, only to match `FINGERPRINT_SHA1` sections (which old KRLs may hold).
fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::certificate::Builder;
    use ssh_key::private::Ed25519Keypair;

    const ECDSA_LINE: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBL41kAZxJzve1GyaZeNLUg5Y2EEy9fSmb1YuLxuDK9H6Y/i7Ykqzb5/slfN97HBBQcCFeQKbdkapO8vRjl7nri0=";

    fn ed25519(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn blob(key: &PrivateKey) -> Vec<u8> {
        key.public_key().to_bytes().unwrap()
    }

    fn cert(ca: &PrivateKey, subject: &PrivateKey, serial: u64, key_id: &str) -> Certificate {
        let subject = subject.public_key().key_data().clone();
        let mut b = Builder::new([7u8; 16], subject, 1_000, 2_000).unwrap();
        b.serial(serial).unwrap();
        b.key_id(key_id).unwrap();
        b.valid_principal("alice").unwrap();
        b.sign(ca).unwrap()
    }

    fn s(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    /// A header with version 1, date 2, flags 0 and the given comment.
    fn header(comment: &[u8]) -> Vec<u8> {
        [
            &b"SSHKRL\n\0"[..],
            &[0, 0, 0, 1],
            &1u64.to_be_bytes(),
            &2u64.to_be_bytes(),
            &[0; 8],
            &s(b""),
            &s(comment),
        ]
        .concat()
    }

    fn section(kind: u8, data: &[u8]) -> Vec<u8> {
        [&[kind][..], &s(data)].concat()
    }

    /// A certificate section for `ca` with the given subsections.
    fn certs(ca: &[u8], subs: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut data = [s(ca), s(b"")].concat();
        for (kind, sub) in subs {
            data.extend(section(*kind, sub));
        }
        section(SECTION_CERTIFICATES, &data)
    }

    fn parse_err(bytes: &[u8]) -> KrlError {
        Krl::parse(bytes).unwrap_err()
    }

    fn u64s(values: &[u64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    #[test]
    fn tiny_krl_has_exactly_the_spec_bytes() {
        let ca = blob(&ed25519(1));
        assert_eq!(ca.len(), 51);
        let krl = Krl {
            version: 7,
            generated_at: 0x0102_0304_0506_0708,
            comment: "c".into(),
            certificates: vec![CertificateSection {
                ca_key: ca.clone(),
                serials: vec![(10, 12), (5, 5)],
                key_ids: vec!["b".into(), "a".into(), "a".into()],
            }],
            explicit_keys: vec![],
            sha256_fingerprints: vec![[0xAB; 32]],
            sha1_fingerprints: vec![],
        };
        let mut want: Vec<u8> = vec![];
        want.extend(b"SSHKRL\n\0");
        want.extend([0, 0, 0, 1]);
        want.extend([0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        want.extend([0; 8]);
        want.extend([0, 0, 0, 0]);
        want.extend([0, 0, 0, 1, b'c']);
        want.extend([1, 0, 0, 0, 108]);
        want.extend([0, 0, 0, 51]);
        want.extend(&ca);
        want.extend([0, 0, 0, 0]);
        want.extend([0x20, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5]);
        want.extend([0x21, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 10]);
        want.extend([0, 0, 0, 0, 0, 0, 0, 12]);
        want.extend([0x23, 0, 0, 0, 10, 0, 0, 0, 1, b'a', 0, 0, 0, 1, b'b']);
        want.extend([5, 0, 0, 0, 36, 0, 0, 0, 32]);
        want.extend([0xAB; 32]);
        assert_eq!(krl.to_bytes().unwrap(), want);

        let parsed = Krl::parse(&want).unwrap();
        assert_eq!(parsed.unsigned_len, want.len());
        assert!(parsed.signatures.is_empty());
        assert_eq!(parsed.krl.certificates[0].serials, vec![(5, 5), (10, 12)]);
        assert_eq!(parsed.krl.certificates[0].key_ids, vec!["a", "b"]);
        assert_eq!(parsed.krl.to_bytes().unwrap(), want);
    }

    #[test]
    fn empty_krl_is_just_the_header() {
        let krl = Krl {
            version: 1,
            generated_at: 2,
            certificates: vec![CertificateSection {
                ca_key: blob(&ed25519(1)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = krl.to_bytes().unwrap();
        assert_eq!(bytes, header(b""));
        assert_eq!(
            Krl::parse(&bytes).unwrap().krl,
            Krl {
                version: 1,
                generated_at: 2,
                ..Default::default()
            }
        );
    }

    #[test]
    fn writer_merges_sorts_and_dedups() {
        let (ca1, ca2) = (blob(&ed25519(1)), blob(&ed25519(2)));
        let ecdsa = PublicKey::from_openssh(ECDSA_LINE)
            .unwrap()
            .to_bytes()
            .unwrap();
        let max = u64::MAX;
        let messy = Krl {
            version: 3,
            certificates: vec![
                CertificateSection {
                    ca_key: ca1.clone(),
                    serials: vec![(10, 12), (13, 13), (1, 1), (3, 5), (4, 8), (max, max)],
                    key_ids: vec!["z".into(), "y".into()],
                },
                CertificateSection {
                    ca_key: vec![],
                    serials: vec![],
                    key_ids: vec!["any".into()],
                },
                CertificateSection {
                    ca_key: ca2.clone(),
                    ..Default::default()
                },
                CertificateSection {
                    ca_key: ca1.clone(),
                    serials: vec![(2, 2), (max - 1, max - 1), (20, 20)],
                    key_ids: vec!["y".into()],
                },
            ],
            explicit_keys: vec![ecdsa.clone(), ca2.clone(), ecdsa.clone()],
            sha256_fingerprints: vec![[9; 32], [1; 32], [9; 32]],
            ..Default::default()
        };
        let canonical = Krl {
            version: 3,
            certificates: vec![
                CertificateSection {
                    ca_key: vec![],
                    serials: vec![],
                    key_ids: vec!["any".into()],
                },
                CertificateSection {
                    ca_key: ca1.clone(),
                    serials: vec![(1, 8), (10, 13), (20, 20), (max - 1, max)],
                    key_ids: vec!["y".into(), "z".into()],
                },
            ],
            explicit_keys: {
                let mut keys = vec![ecdsa.clone(), ca2.clone()];
                keys.sort();
                keys
            },
            sha256_fingerprints: vec![[1; 32], [9; 32]],
            ..Default::default()
        };
        let bytes = messy.to_bytes().unwrap();
        assert_eq!(bytes, canonical.to_bytes().unwrap());
        assert_eq!(Krl::parse(&bytes).unwrap().krl, canonical);
    }

    /// Subsection types and lengths of the only certificate section of `bytes`.
    fn subsections(bytes: &[u8]) -> Vec<(u8, usize)> {
        let mut r = Reader::new(bytes, header(b"").len());
        assert_eq!(r.u8("t").unwrap(), SECTION_CERTIFICATES);
        let mut sect = Reader::new(r.string("t").unwrap(), 0);
        assert!(r.is_empty());
        sect.string("ca").unwrap();
        sect.string("reserved").unwrap();
        let mut out = vec![];
        while !sect.is_empty() {
            let kind = sect.u8("t").unwrap();
            out.push((kind, sect.string("t").unwrap().len()));
        }
        out
    }

    #[test]
    fn single_serials_go_in_lists_and_runs_in_ranges() {
        let krl = Krl {
            version: 1,
            generated_at: 2,
            certificates: vec![CertificateSection {
                ca_key: vec![],
                serials: vec![(1, 1), (3, 3), (5, 6), (9, 9), (11, 20), (22, 23)],
                key_ids: vec![],
            }],
            ..Default::default()
        };
        assert_eq!(
            subsections(&krl.to_bytes().unwrap()),
            vec![(0x20, 16), (0x21, 16), (0x20, 8), (0x21, 16), (0x21, 16)]
        );
    }

    #[test]
    fn writer_refuses_what_openssh_would_reject() {
        let bad_serials = |serials: Vec<(u64, u64)>| {
            Krl {
                certificates: vec![CertificateSection {
                    ca_key: vec![],
                    serials,
                    key_ids: vec![],
                }],
                ..Default::default()
            }
            .to_bytes()
        };
        assert_eq!(bad_serials(vec![(0, 0)]), Err(KrlError::SerialZero));
        assert_eq!(bad_serials(vec![(1, 1), (0, 5)]), Err(KrlError::SerialZero));
        assert_eq!(
            bad_serials(vec![(5, 4)]),
            Err(KrlError::SerialRangeReversed { lo: 5, hi: 4 })
        );
        let comment = Krl {
            comment: "a\0b".into(),
            ..Default::default()
        };
        assert_eq!(comment.to_bytes(), Err(KrlError::CommentContainsNul));
        let id = Krl {
            certificates: vec![CertificateSection {
                key_ids: vec!["x\0".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(id.to_bytes(), Err(KrlError::KeyIdContainsNul));
        let ca = Krl {
            certificates: vec![CertificateSection {
                ca_key: b"not a key".to_vec(),
                key_ids: vec!["x".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(ca.to_bytes(), Err(KrlError::BadCaKey));
        let mut trailing = blob(&ed25519(1));
        trailing.push(0);
        let c = cert(&ed25519(1), &ed25519(2), 5, "x").to_bytes().unwrap();
        for key in [trailing, c, vec![]] {
            let krl = Krl {
                explicit_keys: vec![key],
                ..Default::default()
            };
            assert_eq!(krl.to_bytes(), Err(KrlError::BadExplicitKey));
        }
    }

    #[test]
    fn parser_rejects_bad_headers() {
        assert_eq!(parse_err(b""), KrlError::BadMagic);
        assert_eq!(parse_err(b"SSHKRL\n"), KrlError::BadMagic);
        assert_eq!(parse_err(b"SSHKRL\n\x01\0\0\0\x01"), KrlError::BadMagic);
        let mut v2 = header(b"");
        v2[11] = 2;
        assert_eq!(parse_err(&v2), KrlError::UnsupportedFormatVersion(2));
        let h = header(b"");
        for cut in 8..h.len() {
            assert!(
                matches!(parse_err(&h[..cut]), KrlError::Truncated { .. }),
                "cut at {cut}"
            );
        }
        assert_eq!(parse_err(&header(b"a\0b")), KrlError::CommentContainsNul);
        assert_eq!(
            parse_err(&header(b"\xff")),
            KrlError::NotUtf8 { what: "comment" }
        );
        assert_eq!(parse_err(&vec![0; MAX_KRL_BYTES + 1]), KrlError::TooLarge);
    }

    #[test]
    fn parser_rejects_unknown_sections_and_subsections() {
        let ca = blob(&ed25519(1));
        for kind in [0, 6, 0x20, 255] {
            let bytes = [header(b""), section(kind, b"")].concat();
            assert_eq!(parse_err(&bytes), KrlError::UnknownSection(kind));
        }
        for kind in [0x1f, 0x24, 0x39] {
            let bytes = [header(b""), certs(&ca, &[(kind, vec![])])].concat();
            assert_eq!(parse_err(&bytes), KrlError::UnknownCertSubsection(kind));
        }
        let bad_ca = [header(b""), certs(b"junk", &[])].concat();
        assert_eq!(parse_err(&bad_ca), KrlError::BadCaKey);
    }

    #[test]
    fn parser_rejects_bad_serials() {
        let ca = blob(&ed25519(1));
        let with = |subs: &[(u8, Vec<u8>)]| [header(b""), certs(&ca, subs)].concat();
        assert_eq!(
            parse_err(&with(&[(0x20, u64s(&[3, 0]))])),
            KrlError::SerialZero
        );
        assert_eq!(
            parse_err(&with(&[(0x21, u64s(&[0, 4]))])),
            KrlError::SerialZero
        );
        assert_eq!(
            parse_err(&with(&[(0x21, u64s(&[9, 3]))])),
            KrlError::SerialRangeReversed { lo: 9, hi: 3 }
        );
        assert_eq!(
            parse_err(&with(&[(0x21, u64s(&[1, 3, 5]))])),
            KrlError::TrailingBytes {
                what: "certificate subsection"
            }
        );
        assert!(matches!(
            parse_err(&with(&[(0x21, u64s(&[1]))])),
            KrlError::Truncated { .. }
        ));
        assert!(matches!(
            parse_err(&with(&[(0x20, [u64s(&[1]), vec![0; 4]].concat())])),
            KrlError::Truncated { .. }
        ));
        // Bitmap at offset 0 with bit 0 set is serial 0.
        let bitmap = |offset: u64, mpint: &[u8]| [offset.to_be_bytes().to_vec(), s(mpint)].concat();
        assert_eq!(
            parse_err(&with(&[(0x22, bitmap(0, &[1]))])),
            KrlError::SerialZero
        );
        assert_eq!(
            parse_err(&with(&[(0x22, bitmap(5, &[0x80]))])),
            KrlError::BadBitmap
        );
        assert_eq!(
            parse_err(&with(&[(0x22, bitmap(5, &[1; 2049]))])),
            KrlError::BadBitmap
        );
        assert_eq!(
            parse_err(&with(&[(0x22, bitmap(5, &[0; 2050]))])),
            KrlError::BadBitmap
        );
        assert_eq!(
            parse_err(&with(&[(0x22, bitmap(u64::MAX, &[2]))])),
            KrlError::BitmapWraps
        );
        // Even an unset bit past 2^64-1 below the highest set bit wraps, as in OpenSSH.
        assert_eq!(
            parse_err(&with(&[(0x22, bitmap(u64::MAX - 1, &[5]))])),
            KrlError::BitmapWraps
        );
        let top = Krl::parse(&with(&[(0x22, bitmap(u64::MAX - 1, &[3]))])).unwrap();
        assert_eq!(
            top.krl.certificates[0].serials,
            vec![(u64::MAX - 1, u64::MAX)]
        );
        // A leading zero byte makes the full 2049 bytes acceptable, and zero bits revoke nothing.
        let mut long = vec![0u8; 2049];
        long[1] = 0x40;
        let ok = Krl::parse(&with(&[(0x22, bitmap(1, &long))])).unwrap();
        assert_eq!(ok.krl.certificates[0].serials, vec![(1 + 16382, 1 + 16382)]);
        let empty = Krl::parse(&with(&[(0x22, bitmap(0, &[]))])).unwrap();
        assert_eq!(empty.krl.certificates, vec![]);
    }

    #[test]
    fn bitmap_bits_count_from_the_last_bytes_lsb() {
        let ca = blob(&ed25519(1));
        let sub = [100u64.to_be_bytes().to_vec(), s(&[0x00, 0x01, 0x27])].concat();
        let bytes = [
            header(b""),
            certs(&ca, &[(0x22, sub), (0x20, u64s(&[103]))]),
        ]
        .concat();
        let parsed = Krl::parse(&bytes).unwrap();
        assert_eq!(
            parsed.krl.certificates[0].serials,
            vec![(100, 103), (105, 105), (108, 108)]
        );
    }

    #[test]
    fn parser_rejects_bad_hashes_and_trailing_bytes() {
        let sha256 = [header(b""), section(5, &s(&[0; 31]))].concat();
        assert_eq!(
            parse_err(&sha256),
            KrlError::BadHashLength {
                what: "SHA256",
                len: 31,
                want: 32
            }
        );
        let sha1 = [header(b""), section(3, &s(&[0; 32]))].concat();
        assert_eq!(
            parse_err(&sha1),
            KrlError::BadHashLength {
                what: "SHA1",
                len: 32,
                want: 20
            }
        );
        let good = [header(b""), section(5, &s(&[0; 32]))].concat();
        Krl::parse(&good).unwrap();
        for tail in [&[0x02][..], &[0x02, 0, 0, 0, 9, 1], &[0, 0]] {
            let bytes = [&good[..], tail].concat();
            assert!(
                matches!(parse_err(&bytes), KrlError::Truncated { .. }),
                "{tail:?}"
            );
        }
        // A stray byte inside a section's data is a truncated string there.
        let stray = [
            header(b""),
            section(2, &[s(&blob(&ed25519(1))), vec![7]].concat()),
        ]
        .concat();
        assert!(matches!(parse_err(&stray), KrlError::Truncated { .. }));
        let nul_id = [header(b""), certs(&[], &[(0x23, s(b"a\0"))])].concat();
        assert_eq!(parse_err(&nul_id), KrlError::KeyIdContainsNul);
    }

    #[test]
    fn parser_caps_the_number_of_entries() {
        let odd: Vec<u64> = (0..=MAX_ENTRIES as u64).map(|i| 2 * i + 1).collect();
        let bytes = [header(b""), certs(&[], &[(0x20, u64s(&odd))])].concat();
        assert_eq!(parse_err(&bytes), KrlError::TooLarge);
        // The same count of adjacent serials merges into one range and is fine.
        let run: Vec<u64> = (1..=MAX_ENTRIES as u64 + 1).collect();
        let bytes = [header(b""), certs(&[], &[(0x20, u64s(&run))])].concat();
        let krl = Krl::parse(&bytes).unwrap().krl;
        assert_eq!(
            krl.certificates[0].serials,
            vec![(1, MAX_ENTRIES as u64 + 1)]
        );
    }

    #[test]
    fn serial_set_coalesces_at_the_edges() {
        let set = |ranges: &[(u64, u64)]| {
            let mut s = SerialSet::default();
            for &(lo, hi) in ranges {
                s.insert(lo, hi);
            }
            s.iter().collect::<Vec<_>>()
        };
        let max = u64::MAX;
        assert_eq!(set(&[(max, max), (1, max - 1)]), vec![(1, max)]);
        assert_eq!(set(&[(5, 5), (7, 7), (6, 6)]), vec![(5, 7)]);
        assert_eq!(set(&[(1, 10), (3, 4)]), vec![(1, 10)]);
        assert_eq!(set(&[(3, 4), (1, 10)]), vec![(1, 10)]);
        assert_eq!(set(&[(1, 2), (4, 5), (3, 3)]), vec![(1, 5)]);
        assert_eq!(set(&[(1, 2), (5, 6), (9, 9), (4, 9)]), vec![(1, 2), (4, 9)]);
        assert_eq!(
            set(&[(10, 20), (1, 8), (30, max), (9, 9)]),
            vec![(1, 20), (30, max)]
        );
        assert_eq!(set(&[(2, 3), (5, 6)]), vec![(2, 3), (5, 6)]);
    }

    #[test]
    fn matching_follows_ssh_krl_check_key() {
        let (ca1, ca2) = (ed25519(1), ed25519(2));
        let (alice, bob, carol) = (ed25519(10), ed25519(11), ed25519(12));
        let krl = Krl {
            certificates: vec![
                CertificateSection {
                    ca_key: blob(&ca1),
                    serials: vec![(5, 7), (100, 100)],
                    key_ids: vec!["gone".into()],
                },
                CertificateSection {
                    ca_key: vec![],
                    serials: vec![(1000, 1000)],
                    key_ids: vec!["everywhere".into()],
                },
            ],
            explicit_keys: vec![blob(&bob)],
            sha256_fingerprints: vec![Sha256::digest(blob(&carol)).into()],
            ..Default::default()
        };
        let krl = Krl::parse(&krl.to_bytes().unwrap()).unwrap().krl;
        let cases = [
            (&ca1, &alice, 5, "x", true),
            (&ca1, &alice, 7, "x", true),
            (&ca1, &alice, 4, "x", false),
            (&ca1, &alice, 8, "x", false),
            (&ca2, &alice, 6, "x", false),
            (&ca1, &alice, 0, "gone", true),
            (&ca1, &alice, 0, "gone2", false),
            (&ca2, &alice, 9, "gone", false),
            (&ca2, &alice, 9, "everywhere", true),
            (&ca2, &alice, 1000, "x", true),
            (&ca1, &bob, 9, "x", true),
            (&ca2, &carol, 9, "x", true),
            (&ca1, &alice, 0, "x", false),
        ];
        for (ca, subject, serial, id, want) in cases {
            let c = cert(ca, subject, serial, id);
            assert_eq!(krl.revokes_certificate(&c), want, "serial {serial} id {id}");
            assert_eq!(krl.revokes_key(&c.to_bytes().unwrap()), want);
        }
        assert!(!krl.revokes_key(&blob(&alice)));
        assert!(krl.revokes_key(&blob(&bob)));
        assert!(krl.revokes_key(&blob(&carol)));
        // Revoking a CA key as a plain key revokes every certificate it signed.
        let ca_gone = Krl {
            sha1_fingerprints: vec![sha1(&blob(&ca2))],
            ..Default::default()
        };
        assert!(ca_gone.revokes_certificate(&cert(&ca2, &alice, 0, "")));
        assert!(!ca_gone.revokes_certificate(&cert(&ca1, &alice, 0, "")));
    }

    #[test]
    fn sha1_matches_the_fips_vectors() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }

    /// A signature section made without [`sign`]'s checks, to build what it refuses to.
    fn append_signature(bytes: &[u8], key: &PrivateKey) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out.push(SECTION_SIGNATURE);
        out.extend(s(&blob(key)));
        let sig: Signature = key.try_sign(&out).unwrap();
        out.extend(s(&[s(b"ssh-ed25519"), s(sig.as_bytes())].concat()));
        out
    }

    fn small_krl() -> Vec<u8> {
        Krl {
            version: 9,
            generated_at: 1_700_000_000,
            comment: "test".into(),
            certificates: vec![CertificateSection {
                ca_key: blob(&ed25519(1)),
                serials: vec![(3, 3), (10, 20)],
                key_ids: vec!["k".into()],
            }],
            explicit_keys: vec![blob(&ed25519(20))],
            ..Default::default()
        }
        .to_bytes()
        .unwrap()
    }

    #[test]
    fn signatures_verify_and_every_flipped_byte_fails() {
        let (ca, other) = (ed25519(1), ed25519(2));
        let unsigned = small_krl();
        let signed = sign(&unsigned, &ca).unwrap();
        // Signature section: 0x04, string(51-byte key), string(string(11) || string(64)).
        assert_eq!(signed.len(), unsigned.len() + 1 + 55 + 4 + 15 + 68);
        assert_eq!(&signed[..unsigned.len()], &unsigned[..]);
        let (krl, prefix) = verify(&signed, &[ca.public_key().clone()]).unwrap();
        assert_eq!(prefix, &unsigned[..]);
        assert_eq!(krl, Krl::parse(&unsigned).unwrap().krl);
        let both = [other.public_key().clone(), ca.public_key().clone()];
        assert!(verify(&signed, &both).is_ok());
        assert_eq!(
            verify(&signed, &[other.public_key().clone()]),
            Err(KrlError::UntrustedSigner)
        );
        assert_eq!(verify(&signed, &[]), Err(KrlError::UntrustedSigner));
        assert_eq!(
            verify(&unsigned, &[ca.public_key().clone()]),
            Err(KrlError::NotSigned)
        );
        for i in 0..signed.len() {
            let mut bad = signed.clone();
            bad[i] ^= 0x01;
            assert!(
                verify(&bad, &[ca.public_key().clone()]).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn several_signers_and_their_rules() {
        let (k1, k2) = (ed25519(1), ed25519(2));
        let unsigned = small_krl();
        let once = sign(&unsigned, &k1).unwrap();
        assert_eq!(sign(&once, &k1), Err(KrlError::DuplicateSigner));
        let twice = sign(&once, &k2).unwrap();
        for k in [&k1, &k2] {
            let (_, prefix) = verify(&twice, &[k.public_key().clone()]).unwrap();
            assert_eq!(prefix, &unsigned[..]);
        }
        let parsed = Krl::parse(&twice).unwrap();
        assert_eq!(parsed.unsigned_len, unsigned.len());
        assert_eq!(parsed.signatures.len(), 2);

        // The same key twice, each signature itself valid: OpenSSH refuses, so do we.
        let dup = append_signature(&once, &k1);
        assert_eq!(Krl::parse(&dup).unwrap_err(), KrlError::DuplicateSigner);

        // Anything but a signature after a signature.
        let after = [&once[..], &section(5, &s(&[0; 32]))].concat();
        assert_eq!(parse_err(&after), KrlError::SectionAfterSignature);

        // A signer the KRL itself revokes.
        let revoking = Krl {
            explicit_keys: vec![blob(&k1)],
            ..Default::default()
        }
        .to_bytes()
        .unwrap();
        assert_eq!(sign(&revoking, &k1), Err(KrlError::SignerRevoked));
        let forged = append_signature(&revoking, &k1);
        assert_eq!(parse_err(&forged), KrlError::SignerRevoked);
        // ...unless another signer is not revoked; still not vouched for by the revoked one.
        let rescued = append_signature(&forged, &k2);
        assert!(Krl::parse(&rescued).is_ok());
        assert_eq!(
            verify(&rescued, &[k1.public_key().clone()]),
            Err(KrlError::SignerRevoked)
        );
        assert!(verify(&rescued, &[k2.public_key().clone()]).is_ok());

        // Signers other than Ed25519 are reported, not guessed at.
        let ecdsa = PublicKey::from_openssh(ECDSA_LINE)
            .unwrap()
            .to_bytes()
            .unwrap();
        let mut foreign = unsigned.clone();
        foreign.push(SECTION_SIGNATURE);
        foreign.extend(s(&ecdsa));
        foreign.extend(s(b"whatever"));
        assert_eq!(
            parse_err(&foreign),
            KrlError::UnsupportedSigner("ecdsa-sha2-nistp256".into())
        );
        let mut junk = unsigned.clone();
        junk.push(SECTION_SIGNATURE);
        junk.extend(s(b"junk"));
        junk.extend(s(b"junk"));
        assert_eq!(parse_err(&junk), KrlError::BadSignerKey);
    }

    #[test]
    fn signature_blob_is_checked_strictly() {
        let k = ed25519(1);
        let unsigned = small_krl();
        let mut msg = unsigned.clone();
        msg.push(SECTION_SIGNATURE);
        msg.extend(s(&blob(&k)));
        let sig: Signature = k.try_sign(&msg).unwrap();
        let good = [s(b"ssh-ed25519"), s(sig.as_bytes())].concat();
        let with = |blob: Vec<u8>| [msg.clone(), s(&blob)].concat();
        assert!(Krl::parse(&with(good.clone())).is_ok());
        let trailing = [good.clone(), vec![0]].concat();
        let wrong_name = [s(b"ssh-ed25518"), s(sig.as_bytes())].concat();
        let short = [s(b"ssh-ed25519"), s(&sig.as_bytes()[..63])].concat();
        for bad in [trailing, wrong_name, short, vec![]] {
            assert_eq!(parse_err(&with(bad)), KrlError::BadSignature);
        }
        assert!(matches!(sign(b"not a krl", &k), Err(KrlError::BadMagic)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// Writing canonicalizes without changing what is revoked, and is idempotent.
        #[test]
        fn round_trip_preserves_membership(
            ranges in proptest::collection::vec((1u64..60, 0u64..6), 0..12),
            ids in proptest::collection::vec("[a-c]{0,2}", 0..5),
        ) {
            let serials: Vec<(u64, u64)> = ranges.iter().map(|&(lo, len)| (lo, lo + len)).collect();
            let krl = Krl {
                certificates: vec![CertificateSection { ca_key: vec![], serials: serials.clone(), key_ids: ids.clone() }],
                ..Default::default()
            };
            let bytes = krl.to_bytes().unwrap();
            let parsed = Krl::parse(&bytes).unwrap().krl;
            proptest::prop_assert_eq!(parsed.to_bytes().unwrap(), bytes);
            let (got_serials, got_ids) = parsed
                .certificates
                .first()
                .map(|c| (c.serials.clone(), c.key_ids.clone()))
                .unwrap_or_default();
            for n in 0..70u64 {
                let want = serials.iter().any(|&(lo, hi)| lo <= n && n <= hi);
                proptest::prop_assert_eq!(got_serials.iter().any(|&(lo, hi)| lo <= n && n <= hi), want);
            }
            for w in got_serials.windows(2) {
                proptest::prop_assert!(w[0].1 + 1 < w[1].0, "ranges sorted, apart");
            }
            let mut want_ids = ids.clone();
            want_ids.sort();
            want_ids.dedup();
            proptest::prop_assert_eq!(got_ids, want_ids);
        }

        /// Arbitrary bytes after a valid header never panic the parser.
        #[test]
        fn arbitrary_sections_never_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Krl::parse(&[header(b""), tail].concat());
        }
    }
}
