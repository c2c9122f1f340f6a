//! ETags: every resource is served with `ETag: W/"<hash>"` and the same value in its body's
//! `@odata.etag`, computed from the resource's current JSON, so any change (a PATCH, a power
//! change) changes the tag and a stale `If-Match` gets 412.
//!
//! The captured trees carry the vendors' own `@odata.etag` values (iLO `W/"…"`, XCC strong
//! `"…"`), but no response headers; those values were computed by the BMC from data we do not
//! have, so they are replaced rather than kept.

use axum::body::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

const ODATA_ETAG: &str = "@odata.etag";

/// A resource ready to send: the body (with `@odata.etag` set) and the matching ETag header.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub etag: String,
}

/// Serialises `value`, with `@odata.etag` set to a hash of the rest of the document.
pub fn render(mut value: Value) -> Rendered {
    if let Value::Object(map) = &mut value {
        map.remove(ODATA_ETAG);
    }
    // serde_json writes object keys in a fixed order, so equal documents hash equal.
    let plain = serde_json::to_vec(&value).unwrap_or_default();
    let digest = Sha256::digest(&plain);
    let etag = format!("W/\"{}\"", hex::encode_upper(&digest[..6]));
    let body = match &mut value {
        Value::Object(map) => {
            map.insert(ODATA_ETAG.to_owned(), Value::String(etag.clone()));
            serde_json::to_vec(&value).unwrap_or_default()
        }
        _ => plain,
    };
    Rendered {
        body: Bytes::from(body),
        etag,
    }
}

/// Whether an `If-Match` header value allows a write to a resource whose ETag is `current`.
///
/// `*` matches anything; otherwise any listed tag must match. The comparison is weak (RFC 9110
/// §8.8.3.2: `W/"x"` equals `"x"`), since clients copy the tag from `@odata.etag` or from the
/// header and may drop or keep the `W/` prefix.
pub fn if_match_allows(header: &str, current: &str) -> bool {
    let current = opaque(current);
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || opaque(tag) == current)
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn etag_follows_content_and_ignores_the_old_tag() {
        let a = render(json!({"PowerState": "On", "@odata.etag": "\"vendor\""}));
        let b = render(json!({"PowerState": "On"}));
        let c = render(json!({"PowerState": "Off"}));
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.etag, c.etag);
        assert!(a.etag.starts_with("W/\""));
        let body: Value = serde_json::from_slice(&a.body).expect("json");
        assert_eq!(body["@odata.etag"], Value::String(a.etag));
    }

    #[test]
    fn if_match_is_weak_and_accepts_star_and_lists() {
        let tag = "W/\"ABC\"";
        assert!(if_match_allows("W/\"ABC\"", tag));
        assert!(if_match_allows("\"ABC\"", tag));
        assert!(if_match_allows("*", tag));
        assert!(if_match_allows("\"X\", W/\"ABC\"", tag));
        assert!(!if_match_allows("W/\"ABD\"", tag));
        assert!(!if_match_allows("", tag));
    }
}
