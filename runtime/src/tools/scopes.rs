//! Scope hierarchies: a broader scope includes narrower ones, so a token holding `data` may
//! call a tool that requires `data:read` (MCP 2026-07-28: a server MUST account for scope
//! hierarchies when it decides whether a token's scopes suffice).

use std::collections::BTreeSet;

use crate::ConfigError;

/// Which scopes include which, declared by the application (by default none: scopes are
/// compared exactly).
///
/// ```
/// use mcp_gatekeeper::ScopeHierarchy;
/// let scopes = ScopeHierarchy::new()
///     .include("data", ["data:read", "data:write"])
///     .include("admin", ["data", "users:manage"]);
/// assert!(scopes.implies("admin", "data:read"));   // inclusion is transitive
/// assert!(!scopes.implies("data:read", "data"));
/// // Or by naming convention: `data` includes `data:read`, which includes `data:read:own`.
/// assert!(ScopeHierarchy::new().colon_prefixes().implies("data", "data:read:own"));
/// ```
///
/// A tool's guard then accepts a token holding the required scope *or any scope that includes
/// it*; the protected-resource metadata's `scopes_supported` lists the declared broader scopes
/// next to the tools' own, and `403 insufficient_scope` challenges still name the narrow scopes
/// a tool requires. Give the same hierarchy to the authorization server that issues the tokens
/// (`AuthorizationServer::scope_hierarchy`; [`Gatekeeper::oauth`](crate::Gatekeeper::oauth)
/// takes it from there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeHierarchy {
    /// `(broader, narrower)` pairs as declared.
    pairs: Vec<(String, String)>,
    /// Whether `a` includes every `a:...`.
    colon_prefixes: bool,
}

impl ScopeHierarchy {
    /// No inclusions: scopes are compared exactly.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares that `broader` includes each of `narrower` (and, transitively, whatever they
    /// include).
    #[must_use]
    pub fn include<I, S>(mut self, broader: impl Into<String>, narrower: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let broader = broader.into();
        for scope in narrower {
            self.pairs.push((broader.clone(), scope.into()));
        }
        self
    }

    /// Also lets a scope include every scope that extends it after a colon: `data` includes
    /// `data:read`, which includes `data:read:own`.
    #[must_use]
    pub fn colon_prefixes(mut self) -> Self {
        self.colon_prefixes = true;
        self
    }

    /// Merges another hierarchy's inclusions into this one.
    #[must_use]
    pub fn merge(mut self, other: &ScopeHierarchy) -> Self {
        for pair in &other.pairs {
            if !self.pairs.contains(pair) {
                self.pairs.push(pair.clone());
            }
        }
        self.colon_prefixes |= other.colon_prefixes;
        self
    }

    /// Whether nothing is declared (exact comparison).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && !self.colon_prefixes
    }

    /// Whether holding `held` satisfies a requirement of `required` (equal, or `held`
    /// includes it, directly or transitively).
    pub fn implies(&self, held: &str, required: &str) -> bool {
        held == required || self.broader_than(required).contains(held)
    }

    /// Every scope that includes `scope`, directly or transitively (not `scope` itself).
    pub(crate) fn broader_than(&self, scope: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut todo = vec![scope.to_owned()];
        while let Some(current) = todo.pop() {
            let mut parents: Vec<String> = self
                .pairs
                .iter()
                .filter(|(_, narrower)| *narrower == current)
                .map(|(broader, _)| broader.clone())
                .collect();
            if self.colon_prefixes
                && let Some((prefix, _)) = current.rsplit_once(':')
                && !prefix.is_empty()
            {
                parents.push(prefix.to_owned());
            }
            for parent in parents {
                if parent != scope && found.insert(parent.clone()) {
                    todo.push(parent);
                }
            }
        }
        found
    }

    /// The declared scopes (broader and narrower), for `scopes_supported`.
    pub(crate) fn declared(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .flat_map(|(broader, narrower)| [broader.as_str(), narrower.as_str()])
    }

    /// The declared broader scopes that include at least one of `scopes`.
    pub(crate) fn broader_of_any<'a>(
        &self,
        scopes: impl IntoIterator<Item = &'a str>,
    ) -> BTreeSet<String> {
        scopes
            .into_iter()
            .flat_map(|scope| self.broader_than(scope))
            .collect()
    }

    /// Refuses names that are not RFC 6749 scope tokens (they could never appear in a token's
    /// space-separated `scope`).
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        for scope in self.declared() {
            let valid = !scope.is_empty()
                && scope
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                return Err(ConfigError::invalid(format!(
                    "scope `{scope}` in the scope hierarchy is not an RFC 6749 scope token"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_inclusion_is_transitive_and_one_way() {
        let h = ScopeHierarchy::new()
            .include("admin", ["data"])
            .include("data", ["data:read", "data:write"]);
        assert!(h.implies("admin", "data:write"));
        assert!(h.implies("data", "data:read"));
        assert!(h.implies("data:read", "data:read"));
        assert!(!h.implies("data:read", "data"));
        assert!(!h.implies("data:write", "data:read"));
        assert_eq!(
            h.broader_than("data:read").into_iter().collect::<Vec<_>>(),
            ["admin", "data"]
        );
        assert!(ScopeHierarchy::new().broader_than("x").is_empty());
    }

    #[test]
    fn colon_prefixes_and_cycles() {
        let h = ScopeHierarchy::new().colon_prefixes();
        assert!(h.implies("data", "data:read:own"));
        assert!(h.implies("data:read", "data:read:own"));
        assert!(!h.implies("data:read", "data:write"));
        assert!(!h.implies("dat", "data:read"));
        assert!(h.broader_than(":x").is_empty(), "no empty scope");
        // A cycle is an equivalence, and never loops.
        let cycle = ScopeHierarchy::new()
            .include("a", ["b"])
            .include("b", ["a"]);
        assert!(cycle.implies("a", "b") && cycle.implies("b", "a"));
    }

    #[test]
    fn scope_names_are_checked() {
        assert!(ScopeHierarchy::new().include("a", ["b:c"]).check().is_ok());
        assert!(ScopeHierarchy::new().include("a b", ["c"]).check().is_err());
        assert!(ScopeHierarchy::new().include("a", [""]).check().is_err());
        assert!(
            ScopeHierarchy::new()
                .include("a", ["q\"uote"])
                .check()
                .is_err()
        );
    }

    #[test]
    fn merging_keeps_both() {
        let a = ScopeHierarchy::new().include("a", ["a:1"]);
        let b = ScopeHierarchy::new().include("b", ["b:1"]).colon_prefixes();
        let merged = a.merge(&b);
        assert!(merged.implies("a", "a:1") && merged.implies("b", "b:1"));
        assert!(merged.implies("c", "c:d"));
    }
}
