//! Step 6: HTTP message signatures — draft-cavage-10 (as Tyk sends it) and RFC 9421 — verified
//! against the key registry. Next: the token checks (JWT, API key), then the proxy.
//!
//! Per signature, in order: parse, key, coverage, signature, digest, freshness. Replay is checked
//! by the caller afterwards (`Replay`: in memory, or in Redis shared by the replicas), so only a
//! request that passed everything is recorded.
//! Several signatures in one request (RFC 9421 labels, a cavage header) are all tried: the first
//! that passes wins; otherwise the refusal of the one that got furthest is reported.

pub mod alg;
pub mod cavage;
pub mod coverage;
pub mod date;
pub mod digest;
pub mod explain;
pub mod redis_replay;
pub mod replay;
pub mod rfc9421;
pub mod sign;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, header};

pub use explain::{Attempt, Explanation};
pub use redis_replay::RedisReplay;
pub use replay::{Replay, ReplayStore};

use crate::config::{DigestPolicy, ReplaySetting, SignatureSettings};
use crate::registry::{Key, Registry};
use crate::reject::{Denial, Reject};
use digest::DigestField;

/// The signature schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// draft-cavage-http-signatures-10 (what Tyk sends).
    Cavage,
    /// RFC 9421.
    Rfc9421,
}

impl Scheme {
    /// `cavage` or `rfc9421`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Cavage => "cavage",
            Scheme::Rfc9421 => "rfc9421",
        }
    }
}

/// The checks of one signature, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// The signature header's syntax.
    Parse,
    /// The key: known, valid now, allowed from this IP, with the named algorithm.
    Key,
    /// The covered components against `required`.
    Coverage,
    /// The cryptographic check.
    Signature,
    /// The body against its covered digest.
    Digest,
    /// The signed time against the clock.
    Freshness,
}

impl Stage {
    /// The step's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::Key => "key",
            Stage::Coverage => "coverage",
            Stage::Signature => "signature",
            Stage::Digest => "digest",
            Stage::Freshness => "freshness",
        }
    }
}

/// A request as the verifier sees it. Everything is borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The raw request-target (path + `?` + query) exactly as received.
    pub target: &'a str,
    /// `https` or `http`.
    pub scheme: &'a str,
    /// The Host header, or `:authority` for HTTP/2 (the Host header is used when `None`).
    pub authority: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The body, when the caller buffered it (see `Verifier::needs_body`).
    pub body: Option<&'a [u8]>,
    /// The client IP (for keys with `ip_allow`).
    pub client_ip: IpAddr,
}

/// The parts of a message a signature can cover (a request, or a response for `@status`).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The method (requests).
    pub method: &'a str,
    /// The request-target, after `strip_path_prefix`.
    pub target: &'a str,
    /// `https` or `http`.
    pub scheme: &'a str,
    /// The authority (Host).
    pub authority: Option<&'a str>,
    /// The header fields.
    pub headers: &'a HeaderMap,
    /// The status code, for responses.
    pub status: Option<u16>,
}

impl<'a> Message<'a> {
    fn origin(&self) -> &'a str {
        let t = self.target;
        for s in ["https://", "http://"] {
            if t.len() > s.len() && t.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes()) {
                let rest = &t[s.len()..];
                return match rest.find(['/', '?']) {
                    Some(i) => &rest[i..],
                    None => "",
                };
            }
        }
        t
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &'a str {
        let o = self.origin();
        o.split_once('?').map_or(o, |(p, _)| p)
    }

    /// The query (after `?`), if the target has one.
    pub fn query(&self) -> Option<&'a str> {
        self.origin().split_once('?').map(|(_, q)| q)
    }
}

/// `target` with `prefix` removed when it starts with it on a segment boundary (a gateway's
/// `target_url` path it never signed); `None` when nothing was removed.
pub fn strip_prefix<'a>(target: &'a str, prefix: &str) -> Option<Cow<'a, str>> {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return None;
    }
    let rest = target.strip_prefix(prefix)?;
    match rest.as_bytes().first() {
        None => Some(Cow::Borrowed("/")),
        Some(b'/') => Some(Cow::Borrowed(rest)),
        Some(b'?') => Some(Cow::Owned(format!("/{rest}"))),
        Some(_) => None,
    }
}

/// A request that passed every check of one signature.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The key that signed it.
    pub key: Arc<Key>,
    /// The scheme it was signed with.
    pub scheme: Scheme,
    /// SHA-256 of the signature value, for the replay store (all zeros when `signature.replay` is off).
    pub replay_token: [u8; 32],
    /// Until when this signature is fresh (how long the replay store must remember it).
    pub fresh_until: SystemTime,
}

type Failure = (Stage, Denial);

fn fail(stage: Stage, reject: Reject, detail: impl Into<Cow<'static, str>>) -> Failure {
    (stage, Denial::new(reject, detail))
}

/// A client-supplied string fit for a log line: at most 80 characters, escaped.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

macro_rules! step {
    ($tr:expr, $stage:expr, $ok:expr, $($fmt:tt)*) => {
        if let Some(a) = $tr.as_mut() {
            a.steps.push(($stage, $ok, format!($($fmt)*)));
        }
    };
}

/// Verifies request signatures with fixed settings and a registry.
#[derive(Debug, Clone)]
pub struct Verifier {
    settings: SignatureSettings,
    registry: Arc<Registry>,
}

/// What a cavage signature covers.
struct CavageCover<'p> {
    names: &'p [Cow<'p, str>],
    created: bool,
    expires: bool,
}

impl coverage::Covers for CavageCover<'_> {
    fn scheme(&self) -> Scheme {
        Scheme::Cavage
    }
    fn covers(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
    fn signs_created(&self) -> bool {
        self.created
    }
    fn signs_expires(&self) -> bool {
        self.expires
    }
}

impl coverage::Covers for rfc9421::Signature {
    fn scheme(&self) -> Scheme {
        Scheme::Rfc9421
    }
    fn covers(&self, name: &str) -> bool {
        self.components
            .iter()
            .any(|c| c.name == name && c.covers_whole())
    }
    fn signs_created(&self) -> bool {
        self.created.is_some()
    }
    fn signs_expires(&self) -> bool {
        self.expires.is_some()
    }
}

impl Verifier {
    /// A verifier for these settings and keys.
    pub fn new(settings: &SignatureSettings, registry: Arc<Registry>) -> Verifier {
        Verifier {
            settings: settings.clone(),
            registry,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &SignatureSettings {
        &self.settings
    }

    /// True when the body must be buffered before `verify`: `digest` is not `off`, a `Digest` or
    /// `Content-Digest` header is present, and a signature field mentions a digest (only a covered
    /// digest is checked, so an uncovered one never makes a large body buffer).
    pub fn needs_body(&self, headers: &HeaderMap) -> bool {
        if self.settings.digest == DigestPolicy::Off
            || !(headers.contains_key("digest") || headers.contains_key("content-digest"))
        {
            // Without a digest header there is nothing to check the body against (and with
            // `digest: required` the coverage check refuses the request without reading it).
            return false;
        }
        // A digest header counts only when a signature covers it: buffer only when a signature
        // field mentions a digest at all, so a large body with an uncovered digest still streams.
        let mentions = |name: &str| {
            headers.get_all(name).iter().any(|v| {
                v.as_bytes()
                    .windows(6)
                    .any(|w| w.eq_ignore_ascii_case(b"digest"))
            })
        };
        mentions(self.settings.cavage_header.as_str())
            || mentions("signature")
            || mentions("signature-input")
    }

    /// Verifies the request's signature(s) at `now`.
    pub fn verify(&self, req: &SignedRequest<'_>, now: SystemTime) -> Result<Verified, Denial> {
        self.run(req, now, None)
    }

    /// The same checks, recording every step for `countersign verify --explain`.
    pub fn explain(&self, req: &SignedRequest<'_>, now: SystemTime) -> Explanation {
        let mut attempts = Vec::new();
        let mut notes = Vec::new();
        if let Some(p) = &self.settings.strip_path_prefix {
            match strip_prefix(req.target, p) {
                Some(t) => notes.push(format!(
                    "strip_path_prefix `{p}`: the signed target is taken as `{t}` (received `{}`)",
                    req.target
                )),
                None => notes.push(format!(
                    "strip_path_prefix `{p}` does not prefix `{}`: the target is used as received",
                    req.target
                )),
            }
        }
        let verdict = self.run(req, now, Some(&mut attempts));
        Explanation {
            now,
            notes,
            attempts,
            verdict,
        }
    }

    fn run(
        &self,
        req: &SignedRequest<'_>,
        now: SystemTime,
        mut trace: Option<&mut Vec<Attempt>>,
    ) -> Result<Verified, Denial> {
        let target = match &self.settings.strip_path_prefix {
            Some(p) => strip_prefix(req.target, p).unwrap_or(Cow::Borrowed(req.target)),
            None => Cow::Borrowed(req.target),
        };
        let authority = req
            .authority
            .or_else(|| req.headers.get(header::HOST).and_then(|h| h.to_str().ok()));
        let msg = Message {
            method: req.method.as_str(),
            target: &target,
            scheme: req.scheme,
            authority,
            headers: req.headers,
            status: None,
        };
        let mut best: Option<Failure> = None;
        let mut consider = |f: Failure| {
            if best.as_ref().is_none_or(|b| f.0 > b.0) {
                best = Some(f);
            }
        };
        let record = |trace: &mut Option<&mut Vec<Attempt>>, a: Option<Attempt>| {
            if let (Some(t), Some(a)) = (trace.as_mut(), a) {
                t.push(a);
            }
        };

        let has_input = req.headers.contains_key(&SIGNATURE_INPUT);
        if has_input {
            if !self.settings.schemes.rfc9421 {
                consider(fail(
                    Stage::Parse,
                    Reject::SignatureMissing,
                    "an RFC 9421 signature was sent, but signature.schemes does not accept rfc9421",
                ));
            } else {
                match rfc9421::parse(&msg) {
                    Err(m) => {
                        let mut a = trace
                            .is_some()
                            .then(|| Attempt::new(Scheme::Rfc9421, "Signature-Input".to_string()));
                        let f = fail(Stage::Parse, Reject::MalformedSignature, m);
                        step!(a, Stage::Parse, false, "{}", f.1.detail);
                        if let Some(a) = a.as_mut() {
                            a.outcome = Some(f.clone());
                        }
                        record(&mut trace, a);
                        consider(f);
                    }
                    Ok(sigs) => {
                        let tag = self.settings.rfc9421_tag.as_deref();
                        let mut tried = 0;
                        for s in &sigs {
                            if let Some(t) = tag
                                && s.tag.as_deref() != Some(t)
                            {
                                continue;
                            }
                            tried += 1;
                            let mut a = trace.is_some().then(|| {
                                Attempt::new(
                                    Scheme::Rfc9421,
                                    format!("Signature-Input label `{}`", s.label),
                                )
                            });
                            let r = self.rfc9421_attempt(req, &msg, s, now, &mut a);
                            if let Some(a) = a.as_mut() {
                                a.outcome = r.as_ref().err().cloned();
                            }
                            record(&mut trace, a);
                            match r {
                                Ok(v) => return Ok(v),
                                Err(f) => consider(f),
                            }
                        }
                        if tried == 0 {
                            let labels: Vec<String> = sigs
                                .iter()
                                .map(|s| match &s.tag {
                                    Some(t) => format!("{} (tag \"{}\")", s.label, shown(t)),
                                    None => format!("{} (no tag)", s.label),
                                })
                                .collect();
                            consider(fail(
                                Stage::Parse,
                                Reject::SignatureMissing,
                                format!(
                                    "no RFC 9421 signature has tag \"{}\" (signature.rfc9421_tag); labels: {}",
                                    tag.unwrap_or_default(),
                                    labels.join(", ")
                                ),
                            ));
                        }
                    }
                }
            }
        }

        // With Signature-Input present, the Signature header belongs to RFC 9421.
        let configured_usable = !(has_input && self.settings.cavage_header == "signature");
        let also_signature = self.settings.cavage_header != "signature" && !has_input;
        let candidates: [(&HeaderName, bool); 2] =
            [(&self.settings.cavage_header, true), (&SIGNATURE, false)];
        for (name, configured) in candidates
            .into_iter()
            .take(1 + usize::from(also_signature))
            .skip(usize::from(!configured_usable))
        {
            let mut values = req.headers.get_all(name).iter();
            let Some(first) = values.next() else {
                continue;
            };
            let in_authorization = name == header::AUTHORIZATION;
            let shown_name = HeaderTitle(name);
            if values.next().is_some() {
                consider(fail(
                    Stage::Parse,
                    Reject::MalformedSignature,
                    format!("the request has several {shown_name} headers"),
                ));
                continue;
            }
            let Ok(text) = first.to_str() else {
                consider(fail(
                    Stage::Parse,
                    Reject::MalformedSignature,
                    format!("the {shown_name} header is not visible ASCII"),
                ));
                continue;
            };
            let params = match cavage::strip_scheme(text) {
                Some(p) => p,
                // Authorization carries other schemes (Bearer, Basic): not ours.
                None if in_authorization => continue,
                None => text.trim(),
            };
            if !self.settings.schemes.cavage {
                consider(fail(
                    Stage::Parse,
                    Reject::SignatureMissing,
                    format!(
                        "a draft-cavage signature was sent in {shown_name}, but signature.schemes does not accept cavage"
                    ),
                ));
                continue;
            }
            let source = Source {
                name,
                configured: configured && name != header::AUTHORIZATION,
            };
            let mut a = trace
                .is_some()
                .then(|| Attempt::new(Scheme::Cavage, source.to_string()));
            let r = self.cavage_attempt(req, &msg, &source, in_authorization, params, now, &mut a);
            if let Some(a) = a.as_mut() {
                a.outcome = r.as_ref().err().cloned();
            }
            record(&mut trace, a);
            match r {
                Ok(v) => return Ok(v),
                Err(f) => consider(f),
            }
        }

        Err(match best {
            Some((_, d)) => d,
            None => Denial::new(
                Reject::SignatureMissing,
                format!(
                    "no signature: neither {} with `Signature …`, a Signature header, nor Signature-Input",
                    HeaderTitle(&self.settings.cavage_header)
                ),
            ),
        })
    }

    fn key_stage(
        &self,
        key_id: &str,
        requested: Option<&str>,
        req: &SignedRequest<'_>,
        now: SystemTime,
        tr: &mut Option<Attempt>,
    ) -> Result<&Arc<Key>, Failure> {
        if let Some(a) = tr.as_mut() {
            a.key_id = Some(key_id.to_string());
            a.requested_algorithm = requested.map(str::to_string);
        }
        let Some(key) = self.registry.get(key_id) else {
            let f = fail(
                Stage::Key,
                Reject::UnknownKey,
                format!("no key `{}` in the registry", shown(key_id)),
            );
            step!(tr, Stage::Key, false, "{}", f.1.detail);
            return Err(f);
        };
        let Some(algorithm) = key.algorithm() else {
            let f = fail(
                Stage::Key,
                Reject::UnknownKey,
                format!("`{}` is an API key, not a signing key", shown(key_id)),
            );
            step!(tr, Stage::Key, false, "{}", f.1.detail);
            return Err(f);
        };
        if let Some(a) = tr.as_mut() {
            a.key_algorithm = Some(algorithm.name().to_string());
        }
        if let Err(m) = key.check_validity(now) {
            step!(tr, Stage::Key, false, "{m}");
            return Err(fail(Stage::Key, Reject::UnknownKey, m));
        }
        if let Some(set) = &key.ip_allow
            && !set.contains(req.client_ip)
        {
            let nets: Vec<String> = key.ip_allow_nets.iter().map(|n| n.to_string()).collect();
            let m = format!(
                "key `{}` may not be used from {} (its ip_allow: {})",
                key.id,
                req.client_ip,
                nets.join(", ")
            );
            step!(tr, Stage::Key, false, "{m}");
            return Err(fail(Stage::Key, Reject::KeyNotAllowedFromIp, m));
        }
        if let Some(r) = requested
            && !algorithm.accepts_name(r)
        {
            let m = format!(
                "the signature names algorithm `{}`, but key `{}` is registered as {} (the registered algorithm is the truth)",
                shown(r),
                key.id,
                algorithm.name()
            );
            step!(tr, Stage::Key, false, "{m}");
            return Err(fail(Stage::Key, Reject::SignatureInvalid, m));
        }
        step!(
            tr,
            Stage::Key,
            true,
            "key `{}`: {} ({})",
            key.id,
            algorithm.name(),
            key.fingerprint
        );
        Ok(key)
    }

    fn coverage_stage(
        &self,
        c: &dyn coverage::Covers,
        key: &Key,
        covered: &dyn Fn() -> String,
        digest_fields: usize,
        tr: &mut Option<Attempt>,
    ) -> Result<(), Failure> {
        let missing = coverage::missing(c, &self.settings.required, &key.required);
        if !missing.is_empty() {
            let from_key: Vec<&str> = missing
                .iter()
                .copied()
                .filter(|m| !self.settings.required.iter().any(|r| r == m))
                .collect();
            let mut m = format!(
                "the signature does not cover {} (covered: {}); ",
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                covered()
            );
            if from_key.is_empty() {
                m.push_str("signature.required asks for it");
            } else {
                m.push_str(&format!("key `{}` requires it (required:)", key.id));
            }
            if c.scheme() == Scheme::Cavage && missing.contains(&"(request-target)") {
                m.push_str("; a Tyk header_list always drops (request-target): leave header_list empty, or lower signature.required");
            }
            step!(tr, Stage::Coverage, false, "{m}");
            return Err(fail(Stage::Coverage, Reject::SignatureInvalid, m));
        }
        if self.settings.digest == DigestPolicy::Required && digest_fields == 0 {
            let m = format!(
                "signature.digest is required, but the signature covers neither digest nor content-digest (covered: {})",
                covered()
            );
            step!(tr, Stage::Coverage, false, "{m}");
            return Err(fail(Stage::Coverage, Reject::SignatureInvalid, m));
        }
        step!(
            tr,
            Stage::Coverage,
            true,
            "covers everything required ({})",
            self.settings
                .required
                .iter()
                .chain(key.required.iter())
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(())
    }

    fn digest_stage(
        &self,
        req: &SignedRequest<'_>,
        fields: &[DigestField],
        tr: &mut Option<Attempt>,
    ) -> Result<(), Failure> {
        if self.settings.digest == DigestPolicy::Off || fields.is_empty() {
            step!(
                tr,
                Stage::Digest,
                true,
                "{}",
                if fields.is_empty() {
                    "no digest header is covered; the body is not checked"
                } else {
                    "signature.digest is off; the body is not checked"
                }
            );
            return Ok(());
        }
        let Some(body) = req.body else {
            let m = "a covered digest must be checked but the body was not buffered (the caller must honour needs_body)";
            step!(tr, Stage::Digest, false, "{m}");
            return Err(fail(Stage::Digest, Reject::MalformedRequest, m));
        };
        for f in fields {
            for v in req.headers.get_all(f.name()) {
                if let Err(m) = digest::check(*f, v.as_bytes(), body) {
                    step!(tr, Stage::Digest, false, "{m}");
                    return Err(fail(Stage::Digest, Reject::DigestMismatch, m));
                }
            }
        }
        step!(
            tr,
            Stage::Digest,
            true,
            "the body ({} bytes) matches {}",
            body.len(),
            fields
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(" and ")
        );
        Ok(())
    }

    /// Checks one signed time; returns until when it stays fresh. `what` describes the time for
    /// the refusal and is only built when there is one.
    fn window(&self, what: impl FnOnce() -> String, signed: i64, now: i64) -> Result<i64, String> {
        let skew = secs(self.settings.clock_skew);
        let max_age = secs(self.settings.max_age);
        let age = now.saturating_sub(signed);
        if age < -skew {
            return Err(format!(
                "{} is {}s in the future (clock_skew {skew}s); check the signer's clock",
                what(),
                -age
            ));
        }
        if age > max_age {
            return Err(format!(
                "{} is {age}s old (max_age {max_age}s); check the signer's clock and time zone",
                what()
            ));
        }
        Ok(signed.saturating_add(max_age))
    }

    /// The replay token of an accepted signature value; all zeros when replay is off.
    fn replay_token(&self, value: &[u8]) -> [u8; 32] {
        if self.settings.replay == crate::config::ReplaySetting::Off {
            return [0u8; 32];
        }
        token(value)
    }

    fn expires_check(&self, expires: i64, now: i64) -> Result<i64, String> {
        let skew = secs(self.settings.clock_skew);
        if now > expires.saturating_add(skew) {
            return Err(format!(
                "the signature expired {}s ago (expires={expires}, clock_skew {skew}s)",
                now - expires
            ));
        }
        Ok(expires.saturating_add(skew))
    }

    fn unsigned_until(&self, now: SystemTime) -> SystemTime {
        let d = self.settings.max_age.max(self.settings.clock_skew);
        now.checked_add(d)
            .unwrap_or_else(|| date::from_unix(i64::MAX))
    }

    #[allow(clippy::too_many_arguments)]
    fn cavage_attempt(
        &self,
        req: &SignedRequest<'_>,
        msg: &Message<'_>,
        source: &Source<'_>,
        in_authorization: bool,
        text: &str,
        now: SystemTime,
        tr: &mut Option<Attempt>,
    ) -> Result<Verified, Failure> {
        let p = match cavage::parse(text) {
            Ok(p) => p,
            Err(e) => {
                let m = format!("{source}: {e}");
                step!(tr, Stage::Parse, false, "{m}");
                return Err(fail(Stage::Parse, Reject::MalformedSignature, m));
            }
        };
        let mut sig_buf = [0; cavage::SIG_BUF_LEN];
        let sig = match cavage::decode_signature(&p.signature, &mut sig_buf) {
            Ok(s) => s,
            Err(e) => {
                let m = format!("{source}: {e}");
                step!(tr, Stage::Parse, false, "{m}");
                return Err(fail(Stage::Parse, Reject::MalformedSignature, m));
            }
        };
        let covered = || p.headers.join(" ");
        if let Some(a) = tr.as_mut() {
            a.covered = p.headers.iter().map(|h| h.to_string()).collect();
            if !p.headers_given {
                a.notes
                    .push("no headers= parameter: the draft's default `date` applies".to_string());
            }
        }
        step!(
            tr,
            Stage::Parse,
            true,
            "keyId=\"{}\" algorithm={} headers=\"{}\", {}-byte signature",
            shown(&p.key_id),
            p.algorithm
                .as_deref()
                .map(shown)
                .unwrap_or_else(|| "(none)".to_string()),
            covered(),
            sig.len()
        );
        let key = self.key_stage(&p.key_id, p.algorithm.as_deref(), req, now, tr)?;

        if in_authorization && p.headers.iter().any(|h| h == "authorization") {
            let m = "the signature covers `authorization` but travels in the Authorization header, so it can never verify; in Tyk set request_signing.signature_header (e.g. \"Signature\") so the signature goes into its own header, or remove authorization from header_list";
            step!(tr, Stage::Coverage, false, "{m}");
            return Err(fail(Stage::Coverage, Reject::SignatureInvalid, m));
        }
        let cover = CavageCover {
            names: &p.headers,
            created: p.created.is_some() && p.headers.iter().any(|h| h == "(created)"),
            expires: p.expires.is_some() && p.headers.iter().any(|h| h == "(expires)"),
        };
        let digest_fields: Vec<DigestField> = p
            .headers
            .iter()
            .filter_map(|h| match h.as_ref() {
                "digest" => Some(DigestField::Digest),
                "content-digest" => Some(DigestField::ContentDigest),
                _ => None,
            })
            .collect();
        self.coverage_stage(&cover, key, &covered, digest_fields.len(), tr)?;

        let quirks = cavage::Quirks {
            tyk_compat: self.settings.tyk_compat,
            absent_empty: self.settings.tyk_compat && self.settings.tyk_absent_headers_empty,
        };
        let mut notes = Vec::new();
        let signing = match cavage::signing_string(msg, &p, quirks, &mut notes) {
            Ok(s) => s,
            Err(e) => {
                let m = match e {
                    cavage::BuildError::Absent(h) => format!(
                        "headers= lists `{}` but the request has no such header (did a proxy drop it? Tyk's proxy deletes hop-by-hop headers such as Connection after signing, so a signed value is lost: keep them out of Tyk's header_list; tyk_absent_headers_empty reads an absent header as empty, which helps only when it was empty when signed)",
                        shown(&h)
                    ),
                    cavage::BuildError::MissingParam(n) => {
                        format!("headers= lists ({n}) but there is no {n} parameter")
                    }
                };
                step!(tr, Stage::Signature, false, "{m}");
                return Err(fail(Stage::Signature, Reject::SignatureInvalid, m));
            }
        };
        if !notes.is_empty() {
            tracing::debug!(key = %key.id, notes = ?notes, "signing string quirks");
        }
        if let Some(a) = tr.as_mut() {
            a.notes.extend(notes);
            a.base = Some(signing.base.clone());
        }
        if !alg::verify(key, Scheme::Cavage, &signing.base, &sig) {
            let m = format!(
                "the signature does not verify with key `{}` ({}) over the signing string of headers=\"{}\"",
                key.id,
                key.algorithm().map(|a| a.name()).unwrap_or_default(),
                covered()
            );
            step!(tr, Stage::Signature, false, "{m}");
            return Err(fail(Stage::Signature, Reject::SignatureInvalid, m));
        }
        step!(tr, Stage::Signature, true, "verifies with key `{}`", key.id);

        self.digest_stage(req, &digest_fields, tr)?;

        let now_s = date::unix(now);
        let mut until: Option<i64> = None;
        let mut tighten = |u: i64| until = Some(until.map_or(u, |x: i64| x.min(u)));
        let fresh_fail = |m: String, tr: &mut Option<Attempt>| {
            step!(tr, Stage::Freshness, false, "{m}");
            fail(Stage::Freshness, Reject::SignatureExpired, m)
        };
        if let Some(d) = signing.date {
            let name = d.header;
            let text = match std::str::from_utf8(d.value.as_bytes()) {
                Ok(t) => Cow::Borrowed(t),
                Err(_) => String::from_utf8_lossy(d.value.as_bytes()),
            };
            let t = date::parse(&text, &self.settings.date_zones).map_err(|e| {
                let m = format!("the signed {name} `{}` {e}", shown(&text));
                step!(tr, Stage::Freshness, false, "{m}");
                fail(Stage::Freshness, Reject::MalformedSignature, m)
            })?;
            let what = || {
                format!(
                    "the signed {name} `{}` ({})",
                    shown(&text),
                    crate::registry::rfc3339(t)
                )
            };
            tighten(
                self.window(what, date::unix(t), now_s)
                    .map_err(|m| fresh_fail(m, tr))?,
            );
        }
        if cover.created
            && let Some(c) = p.created
        {
            tighten(
                self.window(|| format!("created={c}"), c, now_s)
                    .map_err(|m| fresh_fail(m, tr))?,
            );
        }
        if cover.expires
            && let Some(e) = p.expires
        {
            tighten(
                self.expires_check(e, now_s)
                    .map_err(|m| fresh_fail(m, tr))?,
            );
        }
        let fresh_until = match until {
            Some(u) => {
                step!(
                    tr,
                    Stage::Freshness,
                    true,
                    "fresh until {}",
                    crate::registry::rfc3339(date::from_unix(u))
                );
                date::from_unix(u)
            }
            None => {
                step!(
                    tr,
                    Stage::Freshness,
                    true,
                    "no signed time is covered: freshness cannot be checked"
                );
                self.unsigned_until(now)
            }
        };
        Ok(Verified {
            key: key.clone(),
            scheme: Scheme::Cavage,
            replay_token: self.replay_token(&sig),
            fresh_until,
        })
    }

    fn rfc9421_attempt(
        &self,
        req: &SignedRequest<'_>,
        msg: &Message<'_>,
        s: &rfc9421::Signature,
        now: SystemTime,
        tr: &mut Option<Attempt>,
    ) -> Result<Verified, Failure> {
        let covered = || {
            s.components
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        if let Some(a) = tr.as_mut() {
            a.covered = s.components.iter().map(|c| c.id.clone()).collect();
        }
        step!(tr, Stage::Parse, true, "{}={}", s.label, s.params);
        let Some(keyid) = s.keyid.as_deref() else {
            let m = format!("signature `{}` has no keyid parameter", s.label);
            step!(tr, Stage::Key, false, "{m}");
            return Err(fail(Stage::Key, Reject::UnknownKey, m));
        };
        let key = self.key_stage(keyid, s.alg.as_deref(), req, now, tr)?;

        if s.components.is_empty() {
            let m = format!(
                "signature `{}` covers no components (only its own parameters)",
                s.label
            );
            step!(tr, Stage::Coverage, false, "{m}");
            return Err(fail(Stage::Coverage, Reject::SignatureInvalid, m));
        }
        if self.settings.require_created && s.created.is_none() {
            let m = format!(
                "signature `{}` has no created parameter (signature.require_created)",
                s.label
            );
            step!(tr, Stage::Coverage, false, "{m}");
            return Err(fail(Stage::Coverage, Reject::SignatureInvalid, m));
        }
        let digest_fields: Vec<DigestField> = s
            .components
            .iter()
            .filter(|c| c.covers_whole() && !c.bs)
            .filter_map(|c| match c.name.as_str() {
                "digest" => Some(DigestField::Digest),
                "content-digest" => Some(DigestField::ContentDigest),
                _ => None,
            })
            .collect();
        self.coverage_stage(s, key, &covered, digest_fields.len(), tr)?;

        let base = match rfc9421::signature_base(msg, s) {
            Ok(b) => b,
            Err(e) => {
                let m = match e {
                    rfc9421::BaseError::Absent(what) => format!(
                        "signature `{}` covers {} but the request has none",
                        s.label,
                        shown(&what)
                    ),
                    rfc9421::BaseError::Invalid(m) => format!("signature `{}`: {m}", s.label),
                };
                step!(tr, Stage::Signature, false, "{m}");
                return Err(fail(Stage::Signature, Reject::SignatureInvalid, m));
            }
        };
        if let Some(a) = tr.as_mut() {
            a.base = Some(base.clone());
        }
        if !alg::verify(key, Scheme::Rfc9421, &base, &s.value) {
            let m = format!(
                "signature `{}` does not verify with key `{}` ({}) over the signature base of ({})",
                s.label,
                key.id,
                key.algorithm().map(|a| a.name()).unwrap_or_default(),
                covered()
            );
            step!(tr, Stage::Signature, false, "{m}");
            return Err(fail(Stage::Signature, Reject::SignatureInvalid, m));
        }
        step!(tr, Stage::Signature, true, "verifies with key `{}`", key.id);

        self.digest_stage(req, &digest_fields, tr)?;

        let now_s = date::unix(now);
        let mut until: Option<i64> = None;
        let fresh_fail = |m: String, tr: &mut Option<Attempt>| {
            step!(tr, Stage::Freshness, false, "{m}");
            fail(Stage::Freshness, Reject::SignatureExpired, m)
        };
        if let Some(c) = s.created {
            until = Some(
                self.window(|| format!("created={c}"), c, now_s)
                    .map_err(|m| fresh_fail(m, tr))?,
            );
        } else if s
            .components
            .iter()
            .any(|c| c.name == "date" && c.covers_whole())
            && let Some(v) = msg.headers.get(header::DATE)
        {
            let text = match std::str::from_utf8(v.as_bytes()) {
                Ok(t) => Cow::Borrowed(t),
                Err(_) => String::from_utf8_lossy(v.as_bytes()),
            };
            let t = date::parse(&text, &self.settings.date_zones).map_err(|e| {
                let m = format!("the signed Date `{}` {e}", shown(&text));
                step!(tr, Stage::Freshness, false, "{m}");
                fail(Stage::Freshness, Reject::MalformedSignature, m)
            })?;
            until = Some(
                self.window(
                    || {
                        format!(
                            "the signed Date `{}` ({})",
                            shown(&text),
                            crate::registry::rfc3339(t)
                        )
                    },
                    date::unix(t),
                    now_s,
                )
                .map_err(|m| fresh_fail(m, tr))?,
            );
        }
        if let Some(e) = s.expires {
            let u = self
                .expires_check(e, now_s)
                .map_err(|m| fresh_fail(m, tr))?;
            until = Some(until.map_or(u, |x| x.min(u)));
        }
        let fresh_until = match until {
            Some(u) => {
                step!(
                    tr,
                    Stage::Freshness,
                    true,
                    "fresh until {}",
                    crate::registry::rfc3339(date::from_unix(u))
                );
                date::from_unix(u)
            }
            None => {
                step!(
                    tr,
                    Stage::Freshness,
                    true,
                    "no signed time: freshness cannot be checked"
                );
                self.unsigned_until(now)
            }
        };
        Ok(Verified {
            key: key.clone(),
            scheme: Scheme::Rfc9421,
            replay_token: self.replay_token(&s.value),
            fresh_until,
        })
    }
}

#[cfg(test)]
mod tests;

static SIGNATURE: HeaderName = HeaderName::from_static("signature");
static SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
/// Tyk's stand-in for `Date` (browsers cannot set `Date`).
pub(crate) static X_AUX_DATE: HeaderName = HeaderName::from_static("x-aux-date");

/// A header name in title case (`X-Tyk-Signature`), written only when a message is.
#[derive(Clone, Copy)]
struct HeaderTitle<'a>(&'a HeaderName);

impl std::fmt::Display for HeaderTitle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, w) in self.0.as_str().split('-').enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            let mut c = w.chars();
            if let Some(first) = c.next() {
                write!(f, "{}{}", first.to_ascii_uppercase(), c.as_str())?;
            }
        }
        Ok(())
    }
}

/// Where a cavage signature was read from, for messages.
#[derive(Clone, Copy)]
struct Source<'a> {
    name: &'a HeaderName,
    configured: bool,
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.configured {
            write!(
                f,
                "{} header (signature.cavage_header)",
                HeaderTitle(self.name)
            )
        } else {
            write!(f, "{} header", HeaderTitle(self.name))
        }
    }
}

/// A configured duration in whole seconds, saturating: the config accepts any humantime
/// duration (`clock_skew: 500000000000y` is more than `i64::MAX` seconds).
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn token(sig: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, sig);
    let mut t = [0u8; 32];
    t.copy_from_slice(d.as_ref());
    t
}

/// Components that differ between two otherwise identical requests (used by `config_warnings`).
const NOT_UNIQUE: [&str; 19] = [
    "(request-target)",
    "(created)",
    "(expires)",
    "date",
    "host",
    "digest",
    "content-digest",
    "content-type",
    "content-length",
    "accept",
    "user-agent",
    "@method",
    "@path",
    "@query",
    "@authority",
    "@scheme",
    "@target-uri",
    "@request-target",
    "authorization",
];

/// Warnings about the `signature:` settings for `countersign check`.
pub fn config_warnings(s: &SignatureSettings) -> Vec<String> {
    let mut w = Vec::new();
    if s.replay != ReplaySetting::Off && s.required.iter().all(|r| NOT_UNIQUE.contains(&r.as_str()))
    {
        w.push(format!(
            "signature.replay is on, but signature.required ({}) has no component unique to each request: two identical requests signed in the same second (Tyk's default signs (request-target) and a one-second Date) will be refused as replays; have the gateway send and sign a request id (e.g. require x-request-id; see the README section Replay protection)",
            s.required.join(", ")
        ));
    }
    if s.required.is_empty() {
        w.push("signature.required is empty: a signature that covers almost nothing is accepted (only an empty covered list is refused)".to_string());
    } else {
        if !s.required.iter().any(|r| r == "date" || r == "(created)") {
            w.push("signature.required covers no signed time (date): old requests cannot be told from fresh ones".to_string());
        }
        if !s.required.iter().any(|r| r == "(request-target)") {
            w.push("signature.required does not include (request-target): a signature may be moved to another method or path".to_string());
        }
    }
    if s.clock_skew > Duration::from_secs(3600) || s.max_age > Duration::from_secs(3600) {
        w.push("signature.clock_skew/max_age is over an hour: a captured request stays usable that long".to_string());
    }
    if s.min_rsa_bits < 2048 {
        w.push(format!(
            "signature.min_rsa_bits is {}: RSA keys under 2048 bits are weak",
            s.min_rsa_bits
        ));
    }
    if s.tyk_absent_headers_empty {
        w.push("signature.tyk_absent_headers_empty: a header listed in headers= that does not arrive is read as empty, so a signature can vouch for a header the backend never sees".to_string());
    }
    w
}
