//! "Did you mean" suggestions.

/// The candidate most similar to `input`, if it is similar enough to be a likely typo
/// (Jaro-Winkler above 0.8, darling's threshold).
pub(crate) fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A help line suggesting the closest candidate, or a note listing all of them.
pub(crate) fn hint(input: &str, candidates: &[&str], what: &str) -> Option<String> {
    if let Some(best) = did_you_mean(input, candidates.iter().copied()) {
        return Some(format!("help: did you mean `{best}`?"));
    }
    if candidates.is_empty() {
        return None;
    }
    let list: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
    Some(format!("note: {what} are {}", list.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("admn", ["viewer", "editor", "admin"]),
            Some("admin")
        );
        assert_eq!(did_you_mean("rol", ["role", "rate", "scope"]), Some("role"));
        assert_eq!(did_you_mean("superuser", ["viewer", "admin"]), None);
    }

    #[test]
    fn hint_falls_back_to_the_list() {
        assert_eq!(
            hint("xyz", &["viewer", "admin"], "known roles").as_deref(),
            Some("note: known roles are `viewer`, `admin`")
        );
    }
}
