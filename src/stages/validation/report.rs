//! The report the booted server posts (validation/SCHEMA.md, version 1): its types, and
//! [`parse`], which holds it to the schema and to racklift's bounds before anything reads it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

use crate::config::ReportBounds;
use crate::dhcp::Mac;

/// The report, version 1. Unknown fields are tolerated.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Report {
    pub version: u32,
    pub serial: String,
    #[serde(default)]
    pub system: Option<Value>,
    pub cpus: Cpus,
    pub memory_bytes: u64,
    pub nics: Vec<Nic>,
    pub disks: Vec<Disk>,
    pub lldp: Vec<Neighbour>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Cpus {
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Nic {
    pub name: String,
    pub mac: Mac,
    #[serde(default)]
    pub speed_mbps: Option<u64>,
    #[serde(default)]
    pub operstate: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Disk {
    pub name: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    pub size_bytes: u64,
    #[serde(default)]
    pub rotational: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Neighbour {
    pub interface: String,
    #[serde(default)]
    pub chassis_name: Option<String>,
    #[serde(default)]
    pub chassis_id: Option<String>,
    pub port_id: String,
    #[serde(default)]
    pub port_description: Option<String>,
}

impl Neighbour {
    /// The LLDP system name, unless the switch sent none (or a blank one).
    pub fn switch_name(&self) -> Option<&str> {
        non_blank(self.chassis_name.as_deref())
    }

    /// The port id, unless blank.
    pub fn port(&self) -> Option<&str> {
        non_blank(Some(&self.port_id))
    }

    /// The port description, unless the switch sent none (or a blank one).
    pub fn port_description(&self) -> Option<&str> {
        non_blank(self.port_description.as_deref())
    }
}

/// NetBox ignores a filter whose value is blank and answers every object, so a blank name is
/// no name at all.
fn non_blank(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

impl Report {
    /// SHA-256 of the report as racklift read it (unknown fields left out): "the same report
    /// again".
    pub fn digest(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(&canonical))
    }
}

/// Parses a report and holds it to `bounds`; the error names the field (`cpus.cores: invalid
/// type…`, `lldp: 70 neighbours…`).
pub fn parse(body: &[u8], bounds: &ReportBounds) -> Result<Report, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let report: Report = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })?;
    if report.version != 1 {
        return Err(format!(
            "version: {} is not a report version racklift reads (1)",
            report.version
        ));
    }
    if report.serial.trim().is_empty() {
        return Err(
            "serial: empty; racklift finds the device by its serial (dmidecode -s system-serial-number)"
                .into(),
        );
    }
    for (field, count, max, key) in [
        ("nics", report.nics.len(), bounds.nics, "nics"),
        ("disks", report.disks.len(), bounds.disks, "disks"),
        (
            "lldp",
            report.lldp.len(),
            bounds.lldp_neighbours,
            "lldp_neighbours",
        ),
    ] {
        if count > max {
            return Err(format!(
                "{field}: {count} entries, more than racklift takes (validation.max.{key}: {max})"
            ));
        }
    }
    let mut names = BTreeSet::new();
    for (i, nic) in report.nics.iter().enumerate() {
        if nic.name.trim().is_empty() {
            return Err(format!("nics[{i}].name: empty"));
        }
        if !names.insert(nic.name.as_str()) {
            return Err(format!("nics[{i}].name: {:?} is listed twice", nic.name));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"version": 1, "serial": "SN-1", "cpus": {"sockets": 1, "cores": 1, "threads": 2},
        "memory_bytes": 1, "nics": [{"name": "eth0", "mac": "02:00:00:00:01:00"}], "disks": [],
        "lldp": [{"interface": "eth0", "chassis_name": " ", "port_id": "", "port_description": "x"}]}"#;

    fn with(change: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(GOOD).expect("json");
        change(&mut v);
        serde_json::to_vec(&v).expect("json")
    }

    #[test]
    fn schema_errors_name_the_field() {
        let bounds = ReportBounds::default();
        let err = parse(br#"{"version": 1, "serial": "x", "cpus": {"sockets": 1, "cores": "many", "threads": 2}}"#, &bounds)
            .expect_err("bad type");
        assert!(err.starts_with("cpus.cores:"), "{err}");
        let err = parse(
            br#"{"version": 1, "cpus": {"sockets": 1, "cores": 1, "threads": 2}}"#,
            &bounds,
        )
        .expect_err("missing");
        assert!(err.contains("missing field `serial`"), "{err}");
        let err = parse(&with(|v| v["version"] = 2.into()), &bounds).expect_err("version");
        assert!(err.starts_with("version: 2"), "{err}");
    }

    #[test]
    fn a_blank_serial_and_blank_or_twice_listed_nic_names_are_refused() {
        let bounds = ReportBounds::default();
        assert!(parse(GOOD.as_bytes(), &bounds).is_ok());
        for serial in ["", "  "] {
            let err = parse(&with(|v| v["serial"] = serial.into()), &bounds).expect_err("blank");
            assert!(err.starts_with("serial: empty"), "{err}");
        }
        let err = parse(&with(|v| v["nics"][0]["name"] = "".into()), &bounds).expect_err("name");
        assert_eq!(err, "nics[0].name: empty");
        let twice = with(|v| {
            let nic = v["nics"][0].clone();
            v["nics"].as_array_mut().expect("nics").push(nic);
        });
        let err = parse(&twice, &bounds).expect_err("twice");
        assert_eq!(err, "nics[1].name: \"eth0\" is listed twice");
    }

    #[test]
    fn lists_over_their_bound_are_refused_naming_the_field_and_the_setting() {
        let bounds = ReportBounds {
            nics: 1,
            disks: 0,
            lldp_neighbours: 1,
        };
        assert!(parse(GOOD.as_bytes(), &bounds).is_ok());
        let two = with(|v| {
            let n = v["lldp"][0].clone();
            v["lldp"].as_array_mut().expect("lldp").push(n);
        });
        assert_eq!(
            parse(&two, &bounds).expect_err("over"),
            "lldp: 2 entries, more than racklift takes (validation.max.lldp_neighbours: 1)"
        );
        let disk = with(|v| v["disks"] = serde_json::json!([{"name": "sda", "size_bytes": 1}]));
        assert!(
            parse(&disk, &bounds)
                .expect_err("over")
                .starts_with("disks: 1 entries")
        );
    }

    #[test]
    fn blank_lldp_names_are_no_names() {
        let report = parse(GOOD.as_bytes(), &ReportBounds::default()).expect("report");
        let n = &report.lldp[0];
        assert_eq!(
            (n.switch_name(), n.port(), n.port_description()),
            (None, None, Some("x"))
        );
    }
}
