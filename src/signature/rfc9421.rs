//! RFC 9421 HTTP Message Signatures: `Signature-Input` and `Signature` parsed with a structured
//! field parser (`sfv`), and the signature base rebuilt exactly, `@signature-params` included.
//!
//! Derived components: `@method` `@target-uri` `@authority` `@scheme` `@request-target` `@path`
//! `@query` `@query-param;name=` (and `@status` for responses). Field components with `;sf`,
//! `;key=` and `;bs`. Signature parameters `created` `expires` `nonce` `alg` `keyid` `tag`.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode, utf8_percent_encode};
use sfv::{
    BareItem, DictSerializer, Dictionary, Item, ItemSerializer, ListEntry, ListSerializer, Parser,
};

use super::Message;
use super::cavage::trim_ows;

/// The most labelled signatures read from one request.
pub const MAX_SIGNATURES: usize = 8;
/// The most components one signature may cover.
pub const MAX_COMPONENTS: usize = 64;
/// The longest `Signature-Input` or `Signature` (all lines together) parsed.
pub const MAX_FIELD: usize = 16 * 1024;

/// One covered component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// The component name, e.g. `@method` or `content-digest`.
    pub name: String,
    /// The serialized component identifier, e.g. `"@query-param";name="Pet"`.
    pub id: String,
    /// `;sf`: the field re-serialized as a structured field.
    pub sf: bool,
    /// `;bs`: each field line base64-encoded.
    pub bs: bool,
    /// `;key="…"`: one member of a dictionary field.
    pub key: Option<String>,
    /// `;name="…"` of `@query-param`.
    pub query_name: Option<String>,
}

impl Component {
    /// True when the component covers the whole of its field or derived value (no `;key`,
    /// `;name`), so it can satisfy a coverage requirement.
    pub fn covers_whole(&self) -> bool {
        self.key.is_none() && self.query_name.is_none()
    }
}

/// One labelled signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The label (`sig1`).
    pub label: String,
    /// The covered components, in order.
    pub components: Vec<Component>,
    /// The serialized signature parameters (the value of `@signature-params`).
    pub params: String,
    /// `created`
    pub created: Option<i64>,
    /// `expires`
    pub expires: Option<i64>,
    /// `nonce`
    pub nonce: Option<String>,
    /// `alg`
    pub alg: Option<String>,
    /// `keyid`
    pub keyid: Option<String>,
    /// `tag`
    pub tag: Option<String>,
    /// The signature bytes from the `Signature` field.
    pub value: Vec<u8>,
}

/// Why a signature base could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseError {
    /// A covered field is not in the message.
    Absent(String),
    /// A component cannot be computed (named why).
    Invalid(String),
}

const DERIVED: [&str; 9] = [
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@request-target",
    "@path",
    "@query",
    "@query-param",
    "@status",
];

/// Combines every line of a field with `, `; `None` when absent.
fn combined(msg: &Message<'_>, name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut any = false;
    for v in msg.headers.get_all(name) {
        if any {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(trim_ows(v.as_bytes()));
        any = true;
    }
    any.then_some(out)
}

fn string_param(item: &Item, key: &str) -> Result<Option<String>, String> {
    match item.params.get(key) {
        None => Ok(None),
        Some(BareItem::String(s)) => Ok(Some(s.as_str().to_string())),
        Some(_) => Err(format!("the component parameter `{key}` must be a string")),
    }
}

fn flag_param(item: &Item, key: &str) -> Result<bool, String> {
    match item.params.get(key) {
        None => Ok(false),
        Some(BareItem::Boolean(true)) => Ok(true),
        Some(_) => Err(format!(
            "the component parameter `{key}` must be a plain flag"
        )),
    }
}

fn component(item: &Item) -> Result<Component, String> {
    let BareItem::String(name) = &item.bare_item else {
        return Err("a covered component is not a quoted string".to_string());
    };
    let name = name.as_str();
    for k in item.params.keys() {
        if !matches!(k.as_str(), "sf" | "key" | "bs" | "name" | "req" | "tr") {
            return Err(format!(
                "the component parameter `{}` on `{name}` is not supported",
                k.as_str()
            ));
        }
    }
    if flag_param(item, "req")? {
        return Err(format!(
            "`{name}`;req binds a response to its request; countersign verifies requests"
        ));
    }
    if flag_param(item, "tr")? {
        return Err(format!(
            "`{name}`;tr covers a trailer, which is not supported"
        ));
    }
    let sf = flag_param(item, "sf")?;
    let bs = flag_param(item, "bs")?;
    let key = string_param(item, "key")?;
    let query_name = string_param(item, "name")?;
    if name.starts_with('@') {
        if !DERIVED.contains(&name) {
            return Err(format!(
                "`{name}` is not a derived component countersign knows"
            ));
        }
        if sf || bs || key.is_some() {
            return Err(format!("`{name}` takes no sf, bs or key parameter"));
        }
        if (name == "@query-param") != query_name.is_some() {
            return Err(if query_name.is_some() {
                format!("`{name}` takes no name parameter")
            } else {
                "`@query-param` needs a name parameter".to_string()
            });
        }
    } else {
        if name.is_empty()
            || !name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b)
            })
        {
            return Err(format!("`{name}` is not a lower-case field name"));
        }
        if query_name.is_some() {
            return Err(format!("`{name}` takes no name parameter"));
        }
        if bs && (sf || key.is_some()) {
            return Err(format!("`{name}` cannot combine bs with sf or key"));
        }
    }
    let mut id = String::with_capacity(name.len() + 16);
    let _ = ItemSerializer::with_buffer(&mut id)
        .bare_item(&item.bare_item)
        .parameters(&item.params);
    Ok(Component {
        name: name.to_string(),
        id,
        sf,
        bs,
        key,
        query_name,
    })
}

fn combined_header(msg: &Message<'_>, name: &str) -> Option<Vec<u8>> {
    combined(msg, name)
}

/// Parses every labelled signature of a message (`Signature-Input` with its `Signature`).
pub fn parse(msg: &Message<'_>) -> Result<Vec<Signature>, String> {
    let input = combined_header(msg, "signature-input")
        .ok_or_else(|| "there is no Signature-Input field".to_string())?;
    if input.len() > MAX_FIELD {
        return Err(format!("Signature-Input is longer than {MAX_FIELD} bytes"));
    }
    let inputs: Dictionary = Parser::new(&input)
        .parse()
        .map_err(|e| format!("Signature-Input is not a structured dictionary: {e}"))?;
    let sigs_raw = combined_header(msg, "signature")
        .ok_or_else(|| "Signature-Input is present but Signature is not".to_string())?;
    if sigs_raw.len() > MAX_FIELD {
        return Err(format!("Signature is longer than {MAX_FIELD} bytes"));
    }
    let sigs: Dictionary = Parser::new(&sigs_raw)
        .parse()
        .map_err(|e| format!("Signature is not a structured dictionary: {e}"))?;
    if inputs.is_empty() {
        return Err("Signature-Input is empty".to_string());
    }
    if inputs.len() > MAX_SIGNATURES {
        return Err(format!(
            "more than {MAX_SIGNATURES} signatures in Signature-Input"
        ));
    }
    let mut out = Vec::with_capacity(inputs.len());
    for (label, entry) in &inputs {
        out.push(parse_one(label, entry, sigs.get(label))?);
    }
    Ok(out)
}

fn parse_one(
    label: &sfv::Key,
    entry: &ListEntry,
    sig: Option<&ListEntry>,
) -> Result<Signature, String> {
    let l = label.as_str();
    let ListEntry::InnerList(list) = entry else {
        return Err(format!(
            "Signature-Input `{l}` is not an inner list of components"
        ));
    };
    if list.items.len() > MAX_COMPONENTS {
        return Err(format!(
            "`{l}` covers more than {MAX_COMPONENTS} components"
        ));
    }
    let mut components: Vec<Component> = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let c = component(item).map_err(|m| format!("`{l}`: {m}"))?;
        if components.iter().any(|x| x.id == c.id) {
            return Err(format!("`{l}` covers {} twice", c.id));
        }
        components.push(c);
    }
    let mut created = None;
    let mut expires = None;
    let mut nonce = None;
    let mut alg = None;
    let mut keyid = None;
    let mut tag = None;
    for (k, v) in &list.params {
        let name = k.as_str();
        match name {
            "created" | "expires" => {
                let n: i64 = v
                    .as_integer()
                    .map(i64::from)
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("`{l}`: `{name}` must be a non-negative integer"))?;
                if name == "created" {
                    created = Some(n);
                } else {
                    expires = Some(n);
                }
            }
            "nonce" | "alg" | "keyid" | "tag" => {
                let s = v
                    .as_string()
                    .map(|s| s.as_str().to_string())
                    .ok_or_else(|| format!("`{l}`: `{name}` must be a string"))?;
                *match name {
                    "nonce" => &mut nonce,
                    "alg" => &mut alg,
                    "keyid" => &mut keyid,
                    _ => &mut tag,
                } = Some(s);
            }
            _ => {}
        }
    }
    if let (Some(c), Some(e)) = (created, expires)
        && e < c
    {
        return Err(format!("`{l}`: expires is before created"));
    }
    let value = match sig {
        Some(ListEntry::Item(i)) => i
            .bare_item
            .as_byte_sequence()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| format!("Signature `{l}` is not a byte sequence (:base64:)"))?,
        Some(ListEntry::InnerList(_)) => {
            return Err(format!("Signature `{l}` is not a byte sequence (:base64:)"));
        }
        None => {
            return Err(format!(
                "Signature-Input has `{l}` but Signature has no `{l}`"
            ));
        }
    };
    // The inner list serialized on its own: the member's value without `label=`.
    let mut params = String::with_capacity(64 + 16 * list.items.len());
    let mut ser = ListSerializer::with_buffer(&mut params);
    ser.members(std::iter::once(entry));
    let _ = ser.finish();
    Ok(Signature {
        label: l.to_string(),
        components,
        params,
        created,
        expires,
        nonce,
        alg,
        keyid,
        tag,
        value,
    })
}

/// The characters `@query-param` names and values are percent-encoded with (URL's component
/// percent-encode set).
const QUERY_SET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|')
    .add(b'$')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b',');

fn form_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_decode(plus.as_bytes())
        .decode_utf8_lossy()
        .into_owned()
}

fn reencode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_SET).to_string()
}

fn query_param(msg: &Message<'_>, name: &str) -> Result<String, BaseError> {
    let mut found = None;
    if let Some(q) = msg.query() {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if reencode(&form_decode(k)) == name {
                if found.is_some() {
                    return Err(BaseError::Invalid(format!(
                        "the query parameter `{name}` occurs more than once, so it cannot be covered on its own (cover @query)"
                    )));
                }
                found = Some(reencode(&form_decode(v)));
            }
        }
    }
    found.ok_or_else(|| BaseError::Absent(format!("query parameter `{name}`")))
}

/// `authority` in lower case without the scheme's default port.
pub fn normalized_authority(scheme: &str, authority: &str) -> String {
    let a = authority.to_ascii_lowercase();
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else if scheme.eq_ignore_ascii_case("http") {
        ":80"
    } else {
        return a;
    };
    match a.strip_suffix(default) {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => a,
    }
}

fn serialize_sf(raw: &[u8], name: &str) -> Result<String, BaseError> {
    let bad =
        |e: sfv::Error| BaseError::Invalid(format!("`{name}` is not a structured field: {e}"));
    if let Ok(d) = Parser::new(raw).parse::<Dictionary>() {
        let mut s = DictSerializer::new();
        s.members(d.iter());
        return Ok(s.finish().unwrap_or_default());
    }
    if let Ok(l) = Parser::new(raw).parse::<sfv::List>() {
        let mut s = ListSerializer::new();
        s.members(l.iter());
        return Ok(s.finish().unwrap_or_default());
    }
    let item: Item = Parser::new(raw).parse().map_err(bad)?;
    let mut s = ListSerializer::new();
    s.members(std::iter::once(&ListEntry::Item(item)));
    Ok(s.finish().unwrap_or_default())
}

fn field_value(msg: &Message<'_>, c: &Component, out: &mut Vec<u8>) -> Result<(), BaseError> {
    if c.bs {
        let mut any = false;
        for v in msg.headers.get_all(c.name.as_str()) {
            if any {
                out.extend_from_slice(b", ");
            }
            out.push(b':');
            out.extend_from_slice(
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    trim_ows(v.as_bytes()),
                )
                .as_bytes(),
            );
            out.push(b':');
            any = true;
        }
        return if any {
            Ok(())
        } else {
            Err(BaseError::Absent(c.name.clone()))
        };
    }
    let raw = combined(msg, &c.name).ok_or_else(|| BaseError::Absent(c.name.clone()))?;
    if let Some(key) = &c.key {
        let d: Dictionary = Parser::new(&raw).parse().map_err(|e| {
            BaseError::Invalid(format!("`{}` is not a structured dictionary: {e}", c.name))
        })?;
        let member = d
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
            .ok_or_else(|| BaseError::Absent(format!("{};key=\"{key}\"", c.name)))?;
        let mut s = ListSerializer::new();
        s.members(std::iter::once(member));
        out.extend_from_slice(s.finish().unwrap_or_default().as_bytes());
    } else if c.sf {
        out.extend_from_slice(serialize_sf(&raw, &c.name)?.as_bytes());
    } else {
        out.extend_from_slice(&raw);
    }
    Ok(())
}

fn derived_value(msg: &Message<'_>, c: &Component, out: &mut Vec<u8>) -> Result<(), BaseError> {
    let need_request = || {
        if msg.status.is_some() {
            Err(BaseError::Invalid(format!(
                "`{}` is a request component",
                c.name
            )))
        } else {
            Ok(())
        }
    };
    match c.name.as_str() {
        "@method" => {
            need_request()?;
            out.extend_from_slice(msg.method.as_bytes());
        }
        "@target-uri" => {
            need_request()?;
            if msg.target.starts_with('/') {
                let auth = msg
                    .authority
                    .ok_or_else(|| BaseError::Absent("@target-uri (no Host)".to_string()))?;
                out.extend_from_slice(msg.scheme.to_ascii_lowercase().as_bytes());
                out.extend_from_slice(b"://");
                out.extend_from_slice(normalized_authority(msg.scheme, auth).as_bytes());
            }
            out.extend_from_slice(msg.target.as_bytes());
        }
        "@authority" => {
            need_request()?;
            let auth = msg
                .authority
                .ok_or_else(|| BaseError::Absent("@authority (no Host)".to_string()))?;
            out.extend_from_slice(normalized_authority(msg.scheme, auth).as_bytes());
        }
        "@scheme" => {
            need_request()?;
            out.extend_from_slice(msg.scheme.to_ascii_lowercase().as_bytes());
        }
        "@request-target" => {
            need_request()?;
            out.extend_from_slice(msg.target.as_bytes());
        }
        "@path" => {
            need_request()?;
            let p = msg.path();
            out.extend_from_slice(if p.is_empty() { b"/" } else { p.as_bytes() });
        }
        "@query" => {
            need_request()?;
            out.push(b'?');
            out.extend_from_slice(msg.query().unwrap_or("").as_bytes());
        }
        "@query-param" => {
            need_request()?;
            let name = c.query_name.as_deref().unwrap_or_default();
            out.extend_from_slice(query_param(msg, name)?.as_bytes());
        }
        "@status" => match msg.status {
            Some(s) => out.extend_from_slice(s.to_string().as_bytes()),
            None => {
                return Err(BaseError::Invalid(
                    "`@status` is a response component".to_string(),
                ));
            }
        },
        other => return Err(BaseError::Invalid(format!("`{other}` is not known"))),
    }
    Ok(())
}

/// Builds the signature base for `sig` over `msg`.
pub fn signature_base(msg: &Message<'_>, sig: &Signature) -> Result<Vec<u8>, BaseError> {
    let mut out = Vec::with_capacity(256);
    for c in &sig.components {
        out.extend_from_slice(c.id.as_bytes());
        out.extend_from_slice(b": ");
        if c.name.starts_with('@') {
            derived_value(msg, c, &mut out)?;
        } else {
            field_value(msg, c, &mut out)?;
        }
        out.push(b'\n');
    }
    out.extend_from_slice(b"\"@signature-params\": ");
    out.extend_from_slice(sig.params.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn msg<'a>(h: &'a HeaderMap, target: &'a str) -> Message<'a> {
        Message {
            method: "GET",
            target,
            scheme: "https",
            authority: Some("Example.COM:443"),
            headers: h,
            status: None,
        }
    }

    fn one(h: &HeaderMap, target: &str) -> Result<Vec<u8>, String> {
        let m = msg(h, target);
        let sigs = parse(&m)?;
        signature_base(&m, &sigs[0]).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn rfc_query_param_examples() {
        // RFC 9421 section 2.2.8.
        let h = headers(&[
            (
                "signature-input",
                r#"s=("@query-param";name="var" "@query-param";name="bar" "@query-param";name="fa%C3%A7ade%22%3A%20");created=1"#,
            ),
            ("signature", "s=:AAAA:"),
        ]);
        let base = one(
            &h,
            "/parameters?var=this%20is%20a%20big%0Avalue&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(base).unwrap(),
            "\"@query-param\";name=\"var\": this%20is%20a%20big%0Avalue\n\"@query-param\";name=\"bar\": with%20plus%20whitespace\n\"@query-param\";name=\"fa%C3%A7ade%22%3A%20\": something\n\"@signature-params\": (\"@query-param\";name=\"var\" \"@query-param\";name=\"bar\" \"@query-param\";name=\"fa%C3%A7ade%22%3A%20\");created=1"
        );
    }

    #[test]
    fn rfc_field_examples() {
        // RFC 9421 sections 2.1.1-2.1.3.
        let h = headers(&[
            ("example-dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)  "),
            ("example-header", "value, with, lots"),
            ("example-header", "of, commas"),
            (
                "signature-input",
                r#"s=("example-dict";sf "example-dict";key="a" "example-dict";key="c" "example-header";bs "@authority" "@target-uri" "@query" "@path");created=1"#,
            ),
            ("signature", "s=:AAAA:"),
        ]);
        let base = String::from_utf8(one(&h, "/").unwrap()).unwrap();
        let lines: Vec<&str> = base.lines().collect();
        assert_eq!(lines[0], "\"example-dict\";sf: a=1, b=2;x=1;y=2, c=(a b c)");
        assert_eq!(lines[1], "\"example-dict\";key=\"a\": 1");
        assert_eq!(lines[2], "\"example-dict\";key=\"c\": (a b c)");
        assert_eq!(
            lines[3],
            "\"example-header\";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:"
        );
        assert_eq!(lines[4], "\"@authority\": example.com");
        assert_eq!(lines[5], "\"@target-uri\": https://example.com/");
        assert_eq!(lines[6], "\"@query\": ?");
        assert_eq!(lines[7], "\"@path\": /");
    }

    #[test]
    fn malformed_inputs() {
        for (si, sig, want) in [
            ("s=(\"@method\")", "t=:AAAA:", "Signature has no `s`"),
            ("s=\"@method\"", "s=:AAAA:", "not an inner list"),
            ("s=(\"@nope\")", "s=:AAAA:", "not a derived component"),
            ("s=(\"Content-Type\")", "s=:AAAA:", "lower-case field name"),
            ("s=(\"@method\" \"@method\")", "s=:AAAA:", "twice"),
            ("s=(\"@query-param\")", "s=:AAAA:", "needs a name"),
            ("s=(\"x\";req)", "s=:AAAA:", "req"),
            ("s=(\"x\";bs;sf)", "s=:AAAA:", "cannot combine"),
            (
                "s=(\"@method\");created=\"x\"",
                "s=:AAAA:",
                "non-negative integer",
            ),
            (
                "s=(\"@method\");created=5;expires=4",
                "s=:AAAA:",
                "expires is before",
            ),
            ("s=(\"@method\")", "s=\"x\"", "byte sequence"),
            ("s=(method)", "s=:AAAA:", "quoted string"),
            ("s=(", "s=:AAAA:", "structured dictionary"),
        ] {
            let h = headers(&[("signature-input", si), ("signature", sig)]);
            let e = parse(&msg(&h, "/")).unwrap_err();
            assert!(e.contains(want), "{si}: {e}");
        }
        let h = headers(&[("signature-input", "s=(\"@method\")")]);
        assert!(
            parse(&msg(&h, "/"))
                .unwrap_err()
                .contains("Signature is not")
        );
    }

    #[test]
    fn absent_and_ambiguous_components() {
        let h = headers(&[
            ("signature-input", "s=(\"x-missing\")"),
            ("signature", "s=:AAAA:"),
        ]);
        assert!(one(&h, "/").unwrap_err().contains("Absent"));
        let h = headers(&[
            ("signature-input", "s=(\"@query-param\";name=\"a\")"),
            ("signature", "s=:AAAA:"),
        ]);
        assert!(one(&h, "/?a=1&a=2").unwrap_err().contains("more than once"));
        assert!(one(&h, "/?b=1").unwrap_err().contains("Absent"));
        assert_eq!(
            String::from_utf8(one(&h, "/?a=x+y").unwrap())
                .unwrap()
                .lines()
                .next(),
            Some("\"@query-param\";name=\"a\": x%20y")
        );
    }

    #[test]
    fn authority_normalization() {
        assert_eq!(
            normalized_authority("https", "Example.com:443"),
            "example.com"
        );
        assert_eq!(
            normalized_authority("http", "example.com:8080"),
            "example.com:8080"
        );
        assert_eq!(
            normalized_authority("http", "EXAMPLE.com:80"),
            "example.com"
        );
        assert_eq!(
            normalized_authority("https", "example.com:80"),
            "example.com:80"
        );
    }

    proptest! {
        #[test]
        fn never_panics(si in "\\PC{0,120}", sig in "\\PC{0,60}", target in "/[ -~]{0,40}") {
            let mut h = HeaderMap::new();
            if let (Ok(a), Ok(b)) = (HeaderValue::from_str(&si), HeaderValue::from_str(&sig)) {
                h.insert("signature-input", a);
                h.insert("signature", b);
                let m = msg(&h, &target);
                if let Ok(s) = parse(&m) {
                    for x in &s {
                        let _ = signature_base(&m, x);
                    }
                }
            }
        }

        #[test]
        fn params_round_trip(created in 0i64..1_000_000_000_000, keyid in "[a-z0-9-]{1,20}", nonce in "[ -!#-\\[\\]-~]{0,20}") {
            let si = format!("sig1=(\"@method\" \"@path\");created={created};keyid=\"{keyid}\";nonce=\"{nonce}\"");
            let h = headers(&[("signature-input", &si), ("signature", "sig1=:AAAA:")]);
            let s = parse(&msg(&h, "/")).unwrap();
            prop_assert_eq!(format!("sig1={}", s[0].params), si);
            prop_assert_eq!(s[0].created, Some(created));
            prop_assert_eq!(s[0].keyid.as_deref(), Some(keyid.as_str()));
        }
    }
}
