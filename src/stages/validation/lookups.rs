//! What validation remembers between reports, for [`TTL`]: the switch an LLDP system name names
//! (in a server's site), and a device type's interface templates. Both change rarely, and every
//! server of a rack reports the same switches and the same device type within minutes.
//!
//! Never remembered: the device (read once per report, with its ETag), its interfaces, and the
//! switch ports (read every time: their cables must be current when the check decides). A
//! remembered answer is only a shortcut to a lookup, never the reason for a verdict: a report
//! whose check finds differences after using one is checked again on fresh reads
//! ([`Lookups::forget`], then the same reads again), and a write NetBox refuses (400, 404)
//! forgets what the report used, so the script's re-post reads everything afresh.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

/// How long an answer is remembered.
pub const TTL: Duration = Duration::from_secs(60);

/// Entries per cache: far more switches and device types than a site has.
const CAPACITY: u64 = 10_000;

/// A device type's interface templates (management-only ones left out): name → NetBox type.
pub type Templates = BTreeMap<String, Option<String>>;

/// A switch as a report names it: its LLDP system name, seen from a server in a site (when
/// several sites have a device of that name, the server's site settles it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwitchKey {
    pub name: String,
    pub site: Option<u64>,
}

/// The caches, one per `racklift serve`, shared by its reports.
#[derive(Debug, Clone)]
pub struct Lookups {
    templates: Cache<u64, Arc<Templates>>,
    switches: Cache<SwitchKey, u64>,
}

/// What one report's reads asked the caches for, and whether any answer came from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Used {
    pub device_type: Option<u64>,
    pub switches: Vec<SwitchKey>,
    /// Answers taken from the caches rather than from NetBox.
    pub hits: usize,
    /// A remembered switch no longer carries the name it was found by (renamed meanwhile).
    pub stale: bool,
}

impl Used {
    /// Whether the facts must be read again before a verdict: something came from the caches,
    /// and either the check found differences (they must hold against NetBox as it is now) or a
    /// remembered switch turned out stale.
    pub fn read_again(&self, differences: bool) -> bool {
        self.hits > 0 && (differences || self.stale)
    }
}

impl Default for Lookups {
    fn default() -> Self {
        Self::new(TTL)
    }
}

impl Lookups {
    pub fn new(ttl: Duration) -> Self {
        Self {
            templates: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
            switches: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn templates(&self, device_type: u64) -> Option<Arc<Templates>> {
        self.templates.get(&device_type)
    }

    pub fn remember_templates(&self, device_type: u64, templates: Arc<Templates>) {
        self.templates.insert(device_type, templates);
    }

    pub fn switch(&self, key: &SwitchKey) -> Option<u64> {
        self.switches.get(key)
    }

    /// Only a switch found is remembered: a name NetBox does not know, or knows several times,
    /// is looked up again by the next report (the operator may have just fixed it).
    pub fn remember_switch(&self, key: SwitchKey, id: u64) {
        self.switches.insert(key, id);
    }

    /// Forgets everything `used` names.
    pub fn forget(&self, used: &Used) {
        if let Some(id) = used.device_type {
            self.templates.invalidate(&id);
        }
        for key in &used.switches {
            self.switches.invalidate(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_report_used_is_forgotten_and_nothing_else() {
        let lookups = Lookups::default();
        let key = |name: &str| SwitchKey {
            name: name.into(),
            site: Some(1),
        };
        lookups.remember_switch(key("sw1"), 10);
        lookups.remember_switch(key("sw2"), 20);
        lookups.remember_templates(5, Arc::new(Templates::new()));
        lookups.remember_templates(6, Arc::new(Templates::new()));
        lookups.forget(&Used {
            device_type: Some(5),
            switches: vec![key("sw1")],
            ..Used::default()
        });
        assert_eq!(lookups.switch(&key("sw1")), None);
        assert_eq!(lookups.switch(&key("sw2")), Some(20));
        assert!(lookups.templates(5).is_none());
        assert!(lookups.templates(6).is_some());
        // Another site's view of the same name is another entry.
        assert_eq!(
            lookups.switch(&SwitchKey {
                name: "sw2".into(),
                site: Some(2)
            }),
            None
        );
    }

    #[test]
    fn facts_are_read_again_only_when_a_remembered_answer_may_have_decided() {
        let fresh = Used::default();
        assert!(!fresh.read_again(true));
        let cached = Used {
            hits: 1,
            ..Used::default()
        };
        assert!(!cached.read_again(false));
        assert!(cached.read_again(true));
        assert!(
            Used {
                stale: true,
                ..cached
            }
            .read_again(false)
        );
    }
}
