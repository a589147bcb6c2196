//! The `required` policy: what every signature (and each key's signatures) must cover, in cavage
//! names, satisfied by RFC 9421 signatures through the contract's equivalents:
//! `(request-target)` by `@method` + `@path` + `@query`, or `@request-target`, or `@target-uri`;
//! `date` by the `created` parameter or a covered `date`; `digest` by `content-digest`;
//! `host` by `@authority`.

use super::Scheme;

/// What one signature covers, for the policy check.
pub trait Covers {
    /// The scheme.
    fn scheme(&self) -> Scheme;
    /// True when the component (a cavage name like `(request-target)` or `x-request-id`, or an
    /// RFC 9421 identifier like `@path`; lower case) is covered in full.
    fn covers(&self, name: &str) -> bool;
    /// True when a `created` timestamp is signed (`(created)` covered, or RFC 9421 `created`).
    fn signs_created(&self) -> bool;
    /// True when an `expires` timestamp is signed.
    fn signs_expires(&self) -> bool;
}

/// True when `c` satisfies the requirement `name` (a validated component name, lower case).
pub fn satisfies(c: &dyn Covers, name: &str) -> bool {
    let any = |names: &[&str]| names.iter().any(|n| c.covers(n));
    match c.scheme() {
        Scheme::Cavage => match name {
            "(request-target)" | "@method" | "@path" | "@query" | "@request-target" => {
                c.covers("(request-target)")
            }
            "@target-uri" => c.covers("(request-target)") && c.covers("host"),
            "@authority" | "host" => c.covers("host"),
            "@scheme" => false,
            "date" => c.covers("date") || c.signs_created(),
            "(created)" => c.signs_created(),
            "(expires)" => c.signs_expires(),
            "digest" | "content-digest" => any(&["digest", "content-digest"]),
            other => c.covers(other),
        },
        Scheme::Rfc9421 => match name {
            "(request-target)" => {
                (c.covers("@method") && c.covers("@path") && c.covers("@query"))
                    || any(&["@request-target", "@target-uri"])
            }
            "@path" | "@query" => any(&[name, "@request-target", "@target-uri"]),
            "@authority" | "host" => any(&["@authority", "@target-uri", "host"]),
            "@scheme" => any(&["@scheme", "@target-uri"]),
            "date" => c.covers("date") || c.signs_created(),
            "(created)" => c.signs_created(),
            "(expires)" => c.signs_expires(),
            "digest" | "content-digest" => any(&["content-digest", "digest"]),
            other => c.covers(other),
        },
    }
}

/// The requirements (global, then the key's) that `c` does not satisfy.
pub fn missing<'r>(c: &dyn Covers, global: &'r [String], key: &'r [String]) -> Vec<&'r str> {
    global
        .iter()
        .chain(key.iter())
        .map(String::as_str)
        .filter(|n| !satisfies(c, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        s: Scheme,
        names: Vec<&'static str>,
        created: bool,
    }

    impl Covers for T {
        fn scheme(&self) -> Scheme {
            self.s
        }
        fn covers(&self, name: &str) -> bool {
            self.names.contains(&name)
        }
        fn signs_created(&self) -> bool {
            self.created
        }
        fn signs_expires(&self) -> bool {
            false
        }
    }

    fn req(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rfc9421_equivalents() {
        let r = req(&["(request-target)", "date", "digest", "host"]);
        let full = T {
            s: Scheme::Rfc9421,
            names: vec!["@method", "@path", "@query", "content-digest", "@authority"],
            created: true,
        };
        assert!(missing(&full, &r, &[]).is_empty());
        let no_query = T {
            s: Scheme::Rfc9421,
            names: vec!["@method", "@path", "content-digest", "@authority"],
            created: true,
        };
        assert_eq!(missing(&no_query, &r, &[]), vec!["(request-target)"]);
        let target_uri = T {
            s: Scheme::Rfc9421,
            names: vec!["@target-uri", "date"],
            created: false,
        };
        assert_eq!(missing(&target_uri, &r, &[]), vec!["digest"]);
        let none = T {
            s: Scheme::Rfc9421,
            names: vec![],
            created: false,
        };
        assert_eq!(missing(&none, &r, &req(&["x-request-id"])).len(), 5);
    }

    #[test]
    fn cavage_names() {
        let tyk = T {
            s: Scheme::Cavage,
            names: vec!["(request-target)", "x-request-id", "accept", "date"],
            created: false,
        };
        assert!(
            missing(
                &tyk,
                &req(&["(request-target)", "date"]),
                &req(&["x-request-id"])
            )
            .is_empty()
        );
        assert_eq!(
            missing(&tyk, &req(&["digest"]), &req(&["@scheme", "@method"])),
            vec!["digest", "@scheme"]
        );
        let header_list = T {
            s: Scheme::Cavage,
            names: vec!["content-type"],
            created: false,
        };
        assert_eq!(
            missing(&header_list, &req(&["(request-target)", "date"]), &[]),
            vec!["(request-target)", "date"]
        );
    }
}
