//! The release policy at run time: the configuration file's `[policy]` (read again on SIGHUP)
//! and the rules added in `/admin` (kept in the catalogue), composed into the one policy every
//! flow asks. A change is in force at once: every page is rendered again.

use std::sync::{Arc, Mutex, PoisonError};

use super::simple::SimplePages;
use super::{CacheError, blocking, unix_now};
use crate::config::{PolicyConfig, PolicyRule};
use crate::policy::{Policy, SharedPolicy};
use crate::storage::Catalogue;
use crate::storage::policy_rules::StoredRule;

/// The policy of the file and the rules of `/admin`: stored rules come first (an admin's
/// exception or ban is the more specific), then the file's.
pub fn compose(config: &PolicyConfig, stored: &[StoredRule]) -> Policy {
    let mut config = config.clone();
    let file_rules = std::mem::take(&mut config.rules);
    config.rules = stored.iter().map(|s| s.rule.clone()).chain(file_rules).collect();
    Policy::new(config)
}

pub struct PolicyRules {
    shared: Arc<SharedPolicy>,
    /// The configuration file's `[policy]`, as last read.
    config: Mutex<PolicyConfig>,
    catalogue: Catalogue,
    pages: Arc<SimplePages>,
}

impl PolicyRules {
    pub fn new(
        shared: Arc<SharedPolicy>,
        config: PolicyConfig,
        catalogue: Catalogue,
        pages: Arc<SimplePages>,
    ) -> Self {
        Self {
            shared,
            config: Mutex::new(config),
            catalogue,
            pages,
        }
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.shared.current()
    }

    /// The configuration file's rules, as last read.
    pub fn file_rules(&self) -> Vec<PolicyRule> {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rules
            .clone()
    }

    /// The rules added in `/admin`, oldest first.
    pub async fn stored(&self) -> Result<Vec<StoredRule>, CacheError> {
        let catalogue = self.catalogue.clone();
        blocking(move || catalogue.policy_rules()).await
    }

    pub async fn add(&self, rule: PolicyRule, by: &str) -> Result<i64, CacheError> {
        let catalogue = self.catalogue.clone();
        let by = by.to_owned();
        let id = blocking(move || catalogue.add_policy_rule(&rule, &by, unix_now())).await?;
        self.apply().await?;
        Ok(id)
    }

    /// Removes a rule added in `/admin`; `None` when no such rule exists.
    pub async fn remove(&self, id: i64) -> Result<Option<StoredRule>, CacheError> {
        let catalogue = self.catalogue.clone();
        let removed = blocking(move || catalogue.remove_policy_rule(id)).await?;
        if removed.is_some() {
            self.apply().await?;
        }
        Ok(removed)
    }

    /// Takes the configuration file's `[policy]` as read again (SIGHUP).
    pub async fn reload(&self, config: PolicyConfig) -> Result<(), CacheError> {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = config;
        self.apply().await
    }

    /// Composes the policy again, puts it in force and has every page rendered again.
    async fn apply(&self) -> Result<(), CacheError> {
        let stored = self.stored().await?;
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner).clone();
        self.shared.replace(compose(&config, &stored));
        let pages = self.pages.render_all_again().await?;
        tracing::info!(
            rules = stored.len() + config.rules.len(),
            pages,
            "release policy changed; pages are rendered again"
        );
        Ok(())
    }
}
