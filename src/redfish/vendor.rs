//! Vendors: detected once per session from the service root, and the few places where a BMC
//! departs from plain DMTF Redfish. Each vendor overrides only its own quirks.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// HPE iLO 5 (ProLiant Gen10/Gen10 Plus).
    Ilo5,
    /// Dell iDRAC 9.
    Idrac9,
    /// Any other DMTF Redfish service (Lenovo XCC, Supermicro, the DMTF sample...).
    Generic,
}

impl Vendor {
    /// From the service root: `Vendor`, else the `Oem` section's key (older firmware).
    pub fn detect(root: &Value) -> Self {
        let vendor = root.get("Vendor").and_then(Value::as_str).unwrap_or("");
        let oem = root.get("Oem");
        let has_oem = |key: &str| oem.and_then(|o| o.get(key)).is_some();
        if vendor.eq_ignore_ascii_case("HPE") || has_oem("Hpe") {
            Self::Ilo5
        } else if vendor.eq_ignore_ascii_case("Dell") || has_oem("Dell") {
            Self::Idrac9
        } else {
            Self::Generic
        }
    }

    pub fn quirks(self) -> &'static dyn Quirks {
        match self {
            Self::Ilo5 => &Ilo5,
            Self::Idrac9 => &Idrac9,
            Self::Generic => &Generic,
        }
    }
}

/// Where a BMC departs from the standard. Defaults are plain DMTF Redfish.
pub trait Quirks: Send + Sync {
    fn name(&self) -> &'static str;

    /// The tag to send as `If-Match` with a PATCH of a resource read with `header` (the `ETag`
    /// header) and `body`. Standard: the header, else the body's `@odata.etag`.
    fn etag(&self, header: Option<&str>, body: &Value) -> Option<String> {
        header.map(str::to_owned).or_else(|| {
            body.get("@odata.etag")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    }

    /// Reset types that restart a running server, most preferred first.
    fn restart_types(&self) -> &'static [&'static str] {
        &["ForceRestart", "GracefulRestart", "PowerCycle"]
    }

    /// The vendor's own word on where the server is in POST, if it has one: it changes when
    /// the server resets, so it is one of the marks racklift compares before and after.
    fn post_state(&self, _system: &Value) -> Option<String> {
        None
    }
}

struct Generic;
impl Quirks for Generic {
    fn name(&self) -> &'static str {
        "Redfish"
    }
}

/// iLO 5: weak ETags (`W/"…"`) live in the body's `@odata.etag` and are what iLO checks
/// `If-Match` against; a graceful restart waits on the OS, which a server being provisioned
/// may not have, so a forced restart comes first; `Oem.Hpe.PostState` shows a reset.
struct Ilo5;
impl Quirks for Ilo5 {
    fn name(&self) -> &'static str {
        "HPE iLO 5"
    }
    fn etag(&self, header: Option<&str>, body: &Value) -> Option<String> {
        body.get("@odata.etag")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| header.map(str::to_owned))
    }
    /// `Oem.Hpe.PostState`: `FinishedPost` on a running server, `InPost`/`Reset` right after a
    /// reset, `PowerOff` when off.
    fn post_state(&self, system: &Value) -> Option<String> {
        system
            .pointer("/Oem/Hpe/PostState")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// iDRAC 9: PATCH of a system needs `If-Match` with the `ETag` header (the body carries no
/// `@odata.etag` on most resources); `PowerCycle` is a cold cycle that iDRAC runs even when the
/// host is hung, so it follows ForceRestart.
struct Idrac9;
impl Quirks for Idrac9 {
    fn name(&self) -> &'static str {
        "Dell iDRAC 9"
    }
    fn restart_types(&self) -> &'static [&'static str] {
        &["ForceRestart", "PowerCycle", "GracefulRestart"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn root(tree: &str) -> Value {
        let path = format!(
            "{}/tests/redfish-mockups/{tree}/redfish/v1/index.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("json")
    }

    #[test]
    fn vendors_are_told_apart_from_the_captured_service_roots() {
        assert_eq!(
            Vendor::detect(&root("hpe-ilo5-dl360-gen10plus")),
            Vendor::Ilo5
        );
        assert_eq!(
            Vendor::detect(&root("hpe-ilo5-dl385-gen10plus-v2")),
            Vendor::Ilo5
        );
        assert_eq!(Vendor::detect(&root("dell-idrac9-r750")), Vendor::Idrac9);
        for tree in [
            "lenovo-xcc-sr670v2",
            "supermicro-sys821ge-tnhr",
            "dmtf-public-rackmount1",
        ] {
            assert_eq!(Vendor::detect(&root(tree)), Vendor::Generic, "{tree}");
        }
    }

    #[test]
    fn ilo_takes_the_body_etag_and_others_the_header() {
        let body = json!({"@odata.etag": "W/\"DBFAAF9C\""});
        assert_eq!(
            Ilo5.etag(Some("W/\"hdr\""), &body).as_deref(),
            Some("W/\"DBFAAF9C\"")
        );
        assert_eq!(
            Generic.etag(Some("W/\"hdr\""), &body).as_deref(),
            Some("W/\"hdr\"")
        );
        assert_eq!(Idrac9.etag(None, &json!({})), None);
    }
}
