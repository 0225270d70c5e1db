//! Secrets never leave runner in clear: every text it shows or writes goes through
//! a [`Masker`].

/// What a secret looks like wherever runner shows or writes it.
pub(crate) const MASK: &str = "***";

/// Replaces every secret value with `***`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    secrets: Vec<String>,
}

impl Masker {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    pub(crate) fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let masker = Masker::new(["abc".to_owned(), "abcdef".to_owned(), String::new()]);
        assert_eq!(masker.mask("x abcdef y abc z"), "x *** y *** z");
        assert_eq!(masker.mask("nothing here"), "nothing here");
    }
}
