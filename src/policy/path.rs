//! The form of a request path that route matching uses.
//!
//! The path is forwarded byte for byte as received, but routes are chosen on the path a lenient
//! backend might resolve it to: percent-escapes decoded, `\` read as `/`, `;parameters` dropped from
//! each segment (as Tomcat does), empty and `.` segments removed and `..` applied. So
//! `/public/..%2Fadmin` and `/admin;x` are matched as `/admin`, and cannot slip past the route that
//! protects `/admin`.
//!
//! A stricter backend reads some of these paths differently: Express and Go 1.22's `ServeMux` keep
//! `%2F` inside a segment, so `/admin/..%2Fpublic` is served under `/admin` while the lenient
//! reading says `/public`. `other_readings` lists those other readings (undecoded, cut at a decoded
//! `?` or `#`, decoded twice); a path whose readings fall under different routes is refused, since
//! no single route's policy is the one the backend applies.

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

/// The other ways a backend may read a path that is not plain, each normalized for matching:
/// undecoded (only `/` separates, only unreserved escapes such as `%2e` decoded, `;` and `\\` kept,
/// as RFC 3986 normalization does), cut at the first `?` or `#` that decoding revealed, and decoded
/// until no escape is left. Empty for a plain path.
pub fn other_readings(raw: &str) -> Vec<String> {
    if is_plain(raw) {
        return Vec::new();
    }
    let mut out = vec![strict(raw)];
    let once = String::from_utf8_lossy(&percent_decode_lossy(raw)).into_owned();
    if let Some(i) = once.find(['?', '#']) {
        out.push(lenient(&once[..i]));
    }
    let mut text = once;
    for _ in 0..3 {
        let next = String::from_utf8_lossy(&percent_decode_lossy(&text)).into_owned();
        if next == text {
            break;
        }
        text = next;
    }
    out.push(lenient(&text));
    out
}

/// The first of `other_readings(raw)` that `find` routes elsewhere than `chosen` (the route of
/// `for_matching(raw)`), with where it goes; `None` when every reading agrees.
pub fn disagreeing<'r, T>(
    raw: &str,
    chosen: &T,
    find: impl Fn(&str) -> Option<&'r T>,
) -> Option<(String, Option<&'r T>)> {
    other_readings(raw).into_iter().find_map(|p| {
        let r = find(&p);
        (!r.is_some_and(|r| std::ptr::eq(r, chosen))).then_some((p, r))
    })
}

fn percent_decode_lossy(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

fn normalize(raw: &str) -> String {
    let decoded = percent_decode_lossy(raw);
    lenient(&String::from_utf8_lossy(&decoded))
}

/// Splits on `/` and `\\`, drops `;parameters`, then resolves the segments.
fn lenient(text: &str) -> String {
    let trailing = text.ends_with('/') || text.ends_with('\\');
    let segs = text
        .split(['/', '\\'])
        .map(|seg| seg.split(';').next().unwrap_or(""));
    join(resolve(segs), trailing, text.len())
}

/// Splits on `/` only and decodes only unreserved escapes (RFC 3986 section 6.2.2.2).
fn strict(raw: &str) -> String {
    let decoded: Vec<String> = raw.split('/').map(decode_unreserved).collect();
    join(
        resolve(decoded.iter().map(String::as_str)),
        raw.ends_with('/'),
        raw.len(),
    )
}

fn decode_unreserved(seg: &str) -> String {
    let b = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(c) = seg
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|c| c.is_ascii_alphanumeric() || b"-._~".contains(c))
        {
            out.push(char::from(c));
            i += 3;
            continue;
        }
        let ch = seg[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// Drops empty and `.` segments and applies `..`.
fn resolve<'a>(segs: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out = Vec::new();
    for seg in segs {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out
}

fn join(segs: Vec<&str>, trailing: bool, cap: usize) -> String {
    let mut out = String::with_capacity(cap + 1);
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

    #[test]
    fn other_readings_of_encoded_separators_and_delimiters() {
        let cases: [(&str, &[&str]); 7] = [
            ("/admin/..%2Fpublic", &["/admin/..%2Fpublic", "/public"]),
            ("/public/%2e%2e/admin", &["/admin", "/admin"]),
            ("/admin;x=1", &["/admin;x=1", "/admin"]),
            ("/admin%3Fx=1", &["/admin%3Fx=1", "/admin", "/admin?x=1"]),
            ("/admin%23top", &["/admin%23top", "/admin", "/admin#top"]),
            (
                "/public/%252e%252e/admin",
                &["/public/%252e%252e/admin", "/admin"],
            ),
            ("/pub\\..\\admin", &["/pub\\..\\admin", "/admin"]),
        ];
        for (raw, want) in cases {
            assert_eq!(other_readings(raw), want, "{raw}");
        }
        assert!(other_readings("/a/b").is_empty());
    }

    #[test]
    fn a_reading_routed_elsewhere_is_reported() {
        let routes = ["/public", "/admin", "/"];
        let find = |p: &str| {
            routes
                .iter()
                .find(|r| crate::policy::routes::prefix_matches(r, p))
        };
        let chosen = find(&for_matching("/admin/..%2Fpublic")).unwrap();
        assert_eq!(*chosen, "/public");
        let (reading, other) = disagreeing("/admin/..%2Fpublic", chosen, find).unwrap();
        assert_eq!(reading, "/admin/..%2Fpublic");
        assert_eq!(other.copied(), Some("/admin"));
        // Encoded slashes that stay inside one route are fine.
        let chosen = find(&for_matching("/public/a%2Fb")).unwrap();
        assert!(disagreeing("/public/a%2Fb", chosen, find).is_none());
        let chosen = find(&for_matching("/public/../admin")).unwrap();
        assert!(disagreeing("/public/../admin", chosen, find).is_none());
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
