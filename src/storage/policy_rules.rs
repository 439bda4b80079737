//! The release-policy rules added in `/admin`, in the catalogue.

use rusqlite::{OptionalExtension, params};

use super::{Catalogue, StorageError};
use crate::config::{PolicyRule, RuleAction};
use crate::ecosystem::Ecosystem;

/// A rule as `/admin` added it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    pub id: i64,
    pub rule: PolicyRule,
    pub created_at: u64,
    pub created_by: String,
}

fn stored_rule(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredRule, String>> {
    let (id, ecosystem, project, versions, action, reason): (
        i64,
        String,
        String,
        Option<String>,
        String,
        String,
    ) = (
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    );
    let (created_at, created_by): (i64, String) = (row.get(6)?, row.get(7)?);
    let action = match action.as_str() {
        "allow" => RuleAction::Allow,
        _ => RuleAction::Deny,
    };
    Ok(Ecosystem::parse(&ecosystem)
        .ok_or_else(|| format!("unknown ecosystem {ecosystem:?}"))
        .and_then(|ecosystem| PolicyRule::new(ecosystem, &project, versions, action, reason))
        .map(|rule| StoredRule {
            id,
            rule,
            created_at: created_at.max(0) as u64,
            created_by,
        }))
}

const SELECT: &str = "SELECT id, ecosystem, project, versions, action, reason, created_at, created_by
    FROM policy_rules";

impl Catalogue {
    /// Every stored rule, oldest first. A row this version cannot read (written by a newer one)
    /// is left out, with a warning: holding back more than asked is safer than failing to start.
    pub fn policy_rules(&self) -> Result<Vec<StoredRule>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY id"))?;
        let rows = stmt.query_map([], stored_rule)?;
        let mut rules = Vec::new();
        for row in rows {
            match row? {
                Ok(rule) => rules.push(rule),
                Err(e) => tracing::warn!(error = %e, "a stored policy rule cannot be read; it is left out"),
            }
        }
        Ok(rules)
    }

    pub fn add_policy_rule(&self, rule: &PolicyRule, by: &str, at: u64) -> Result<i64, StorageError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO policy_rules (ecosystem, project, versions, action, reason, created_at, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                rule.ecosystem,
                rule.project.to_string(),
                rule.versions,
                rule.action.as_str(),
                rule.reason,
                at as i64,
                by
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Removes a stored rule; returns it, or `None` when no rule has that id.
    pub fn remove_policy_rule(&self, id: i64) -> Result<Option<StoredRule>, StorageError> {
        let conn = self.lock();
        let found = conn
            .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
            .query_row(params![id], stored_rule)
            .optional()?;
        conn.execute("DELETE FROM policy_rules WHERE id = ?1", params![id])?;
        Ok(found.and_then(Result::ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_kept_in_order_and_removed_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalogue::open(&dir.path().join("c.db")).unwrap();
        let allow = PolicyRule::new(
            Ecosystem::Pypi,
            "Foo_Bar",
            Some("==2.0".into()),
            RuleAction::Allow,
            "hotfix".into(),
        )
        .unwrap();
        let deny = PolicyRule::new(Ecosystem::Hex, "evil*", None, RuleAction::Deny, String::new()).unwrap();
        let first = cat.add_policy_rule(&allow, "admin", 10).unwrap();
        cat.add_policy_rule(&deny, "admin", 20).unwrap();
        let rules = cat.policy_rules().unwrap();
        assert_eq!(rules.iter().map(|r| &r.rule).collect::<Vec<_>>(), [&allow, &deny]);
        assert_eq!(rules[0].rule.project.to_string(), "foo-bar");
        assert_eq!(
            cat.remove_policy_rule(first).unwrap().map(|r| r.rule),
            Some(allow)
        );
        assert_eq!(cat.remove_policy_rule(first).unwrap(), None);
        assert_eq!(cat.policy_rules().unwrap().len(), 1);
    }
}
