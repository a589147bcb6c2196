//! The form of a request path that route matching uses.
//!
//! The path is forwarded byte for byte as received, but routes are chosen on the path a lenient
//! backend might resolve it to: percent-escapes decoded, `\` read as `/`, `;parameters` dropped from
//! each segment (as Tomcat does), empty and `.` segments removed and `..` applied. So
//! `/public/..%2Fadmin` and `/admin;x` are matched as `/admin`, and cannot slip past the route that
//! protects `/admin`.

use std::borrow::Cow;

/// The path used for route matching; borrowed when the raw path is already plain.
pub fn for_matching(raw: &str) -> Cow<'_, str> {
    if is_plain(raw) {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(normalize(raw))
}

/// True when normalizing would change nothing.
fn is_plain(p: &str) -> bool {
    let b = p.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut prev = 0u8;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'%' | b'\\' | b';' => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // "/." followed by end, "/" or "." is a dot segment
                match b.get(i + 1) {
                    None | Some(b'/') | Some(b'.') => return false,
                    _ => {}
                }
            }
            _ => {}
        }
        prev = c;
    }
    true
}

fn percent_decode_lossy(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

fn normalize(raw: &str) -> String {
    let decoded = percent_decode_lossy(raw);
    let text = String::from_utf8_lossy(&decoded);
    let trailing = text.ends_with('/') || text.ends_with('\\');
    let mut segs: Vec<&str> = Vec::new();
    for seg in text.split(['/', '\\']) {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(raw.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_paths_are_borrowed() {
        for p in ["/", "/a/b", "/a.b/c", "/a/.well-known", "/v1/orders/42"] {
            assert!(matches!(for_matching(p), Cow::Borrowed(_)), "{p}");
        }
    }

    #[test]
    fn tricks_resolve_to_what_a_backend_would_see() {
        let cases = [
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E%2Fadmin", "/admin"),
            ("/public/..%2Fadmin", "/admin"),
            ("//admin", "/admin"),
            ("/admin;jsessionid=1/x", "/admin/x"),
            ("/admin;x", "/admin"),
            ("/a/./b/", "/a/b/"),
            ("/..", "/"),
            ("/../../etc", "/etc"),
            ("/pub\\..\\admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/a/b/..", "/a"),
        ];
        for (raw, want) in cases {
            assert_eq!(for_matching(raw), want, "{raw}");
        }
    }

    proptest! {
        #[test]
        fn normalized_is_stable_and_absolute(s in "[/a-z.%;\\\\0-9A-F]{0,40}") {
            let once = normalize(&s);
            prop_assert!(once.starts_with('/'));
            prop_assert!(!once.contains("//"));
            // Normalizing the result changes nothing further, except decoding a second level of
            // escapes, which a backend decoding once would not do either.
            if !once.contains('%') {
                prop_assert_eq!(normalize(&once), once.clone());
            }
        }
    }
}
