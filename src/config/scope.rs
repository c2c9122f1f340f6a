//! The `scope:` section: which devices this racklift manages (sites, roles, tags) and the
//! instance name its NetBox objects carry.

use serde::Deserialize;

/// Which devices this racklift manages, and how its NetBox objects are named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Names the webhook and event rule `racklift netbox apply` writes, so several racklift
    /// instances (one per site, or a test's own) can share one NetBox.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Site slugs; empty means every site.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Device role slugs; empty means every role.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tag slugs: a device must carry at least one of them; empty means no tag is needed.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            instance: default_instance(),
            sites: Vec::new(),
            roles: Vec::new(),
            tags: Vec::new(),
        }
    }
}

fn default_instance() -> String {
    "racklift".to_owned()
}

impl Scope {
    /// Whether a device of this site, role and tags (slugs) is this racklift's to manage.
    /// Every filter that is set must match: one of the sites, one of the roles, one of the tags.
    pub fn covers(&self, site: Option<&str>, role: Option<&str>, tags: &[String]) -> bool {
        let one_of = |wanted: &[String], have: Option<&str>| {
            wanted.is_empty() || have.is_some_and(|h| wanted.iter().any(|w| w == h))
        };
        one_of(&self.sites, site)
            && one_of(&self.roles, role)
            && (self.tags.is_empty() || tags.iter().any(|t| self.tags.contains(t)))
    }
}
