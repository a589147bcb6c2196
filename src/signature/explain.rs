//! `countersign verify --explain`: every step of every signature tried, the signing string or
//! signature base that was rebuilt, and what to look at when it does not verify.

use std::fmt;
use std::time::SystemTime;

use super::{Scheme, Stage, Verified, date};
use crate::reject::Denial;

/// One signature that was tried.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The scheme.
    pub scheme: Scheme,
    /// Where it came from (`Authorization header`, `Signature-Input label sig1`).
    pub source: String,
    /// The key id it names.
    pub key_id: Option<String>,
    /// The key's registered algorithm.
    pub key_algorithm: Option<String>,
    /// The algorithm the request names.
    pub requested_algorithm: Option<String>,
    /// The covered components, as listed.
    pub covered: Vec<String>,
    /// The signing string / signature base rebuilt from the request.
    pub base: Option<Vec<u8>>,
    /// Each check: its stage, whether it passed, and what was found.
    pub steps: Vec<(Stage, bool, String)>,
    /// What a quirk or default changed.
    pub notes: Vec<String>,
    /// Why it failed (`None`: it passed).
    pub outcome: Option<(Stage, Denial)>,
}

impl Attempt {
    /// An attempt with nothing recorded yet.
    pub fn new(scheme: Scheme, source: String) -> Attempt {
        Attempt {
            scheme,
            source,
            key_id: None,
            key_algorithm: None,
            requested_algorithm: None,
            covered: Vec::new(),
            base: None,
            steps: Vec::new(),
            notes: Vec::new(),
            outcome: None,
        }
    }
}

/// Everything `verify --explain` prints.
#[derive(Debug)]
pub struct Explanation {
    /// The clock used.
    pub now: SystemTime,
    /// Notes about the request as a whole (the path prefix removed, ...).
    pub notes: Vec<String>,
    /// Every signature tried, in order.
    pub attempts: Vec<Attempt>,
    /// The verdict `verify` would return.
    pub verdict: Result<Verified, Denial>,
}

/// A line with control characters escaped (quotes and non-ASCII text kept as they are).
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn hints(stage: Stage, scheme: Scheme) -> &'static [&'static str] {
    match (stage, scheme) {
        (Stage::Signature, Scheme::Cavage) => &[
            "the signer must have signed exactly the bytes above; compare with what it logged",
            "is the secret/key the gateway's? Tyk uses its `secret` as raw UTF-8 bytes, not base64",
            "did the path change between signing and here? Tyk signs the path after stripping its listen path and never signs target_url's path (set signature.strip_path_prefix)",
            "did a header change on the way? A client's X-Forwarded-For is replaced by Tyk after signing",
            "a header sent several times is joined with \", \"; Tyk signs only the first value (signature.tyk_compat)",
        ],
        (Stage::Signature, Scheme::Rfc9421) => &[
            "the signer must have signed exactly the signature base above; compare with what it logged",
            "@authority and @target-uri come from the Host header here: a proxy that rewrote Host breaks them",
            "the @signature-params line is the Signature-Input member re-serialized: parameter order matters",
        ],
        (Stage::Freshness, _) => &[
            "compare the signer's clock with this one (`date -u`)",
            "Tyk writes Date in the gateway's local time zone: run it with TZ=UTC, or map the zone in signature.date_zones",
        ],
        (Stage::Key, _) => {
            &["the key id must match an `id` in the key registry exactly (case-sensitive)"]
        }
        (Stage::Coverage, Scheme::Cavage) => &[
            "with Tyk, leave request_signing.header_list empty to sign (request-target) and every header, or list exactly what signature.required asks for",
        ],
        _ => &[],
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Ok(v) => writeln!(
                f,
                "ACCEPTED: {} signature by key `{}` ({})",
                v.scheme.as_str(),
                v.key.id,
                v.key.algorithm().map(|a| a.name()).unwrap_or_default()
            )?,
            Err(d) => writeln!(
                f,
                "REFUSED: {} ({}): {}",
                d.reject.code(),
                d.reject.status().as_u16(),
                d.detail
            )?,
        }
        writeln!(
            f,
            "now: {} (unix {})",
            crate::registry::rfc3339(self.now),
            date::unix(self.now)
        )?;
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        let total = self.attempts.len();
        for (i, a) in self.attempts.iter().enumerate() {
            writeln!(f)?;
            writeln!(
                f,
                "signature {} of {total}: {} in the {}",
                i + 1,
                a.scheme.as_str(),
                a.source
            )?;
            if let Some(k) = &a.key_id {
                writeln!(f, "  key id:     {k}")?;
            }
            match (&a.key_algorithm, &a.requested_algorithm) {
                (Some(k), Some(r)) => {
                    writeln!(f, "  algorithm:  {k} (registered); the request names {r}")?
                }
                (Some(k), None) => {
                    writeln!(f, "  algorithm:  {k} (registered); the request names none")?
                }
                (None, Some(r)) => writeln!(f, "  algorithm:  the request names {r}")?,
                (None, None) => {}
            }
            if !a.covered.is_empty() {
                writeln!(f, "  covers:     {}", a.covered.join(" "))?;
            }
            for (stage, ok, text) in &a.steps {
                writeln!(
                    f,
                    "  {} {:<10} {text}",
                    if *ok { "✓" } else { "✗" },
                    stage.as_str()
                )?;
            }
            if let Some(b) = &a.base {
                let what = match a.scheme {
                    Scheme::Cavage => "signing string",
                    Scheme::Rfc9421 => "signature base",
                };
                let text = String::from_utf8_lossy(b);
                writeln!(
                    f,
                    "  {what} rebuilt from the request ({} lines, {} bytes, lines joined by \\n, no final newline):",
                    text.split('\n').count(),
                    b.len()
                )?;
                for line in text.split('\n') {
                    writeln!(f, "    │{}", printable(line))?;
                }
            }
            for n in &a.notes {
                writeln!(f, "  note: {n}")?;
            }
            if let Some((stage, _)) = &a.outcome {
                let h = hints(*stage, a.scheme);
                if !h.is_empty() {
                    writeln!(f, "  what to check:")?;
                    for line in h {
                        writeln!(f, "    - {line}")?;
                    }
                }
            }
        }
        Ok(())
    }
}
