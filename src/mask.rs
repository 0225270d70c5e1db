//! Secrets never leave runner in clear: every text it shows or writes goes through
//! a [`Masker`].

use aho_corasick::{AhoCorasick, MatchKind};

/// What a secret looks like wherever runner shows or writes it.
pub(crate) const MASK: &str = "***";

/// Lines of a secret shorter than this are not masked on their own (a line of
/// a key file such as `-----` would mask everything); the whole secret always is.
const MIN_LINE: usize = 4;

/// Replaces every secret value with `***`, in one pass over the text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Masker {
    /// The secrets and the forms they take in output; `None` without secrets.
    finder: Option<AhoCorasick>,
}

impl Masker {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut forms: Vec<String> = Vec::new();
        for secret in secrets {
            // Output is cut into lines and each line's end trimmed: a secret
            // ending in `\r` or a newline shows without it, and a secret of
            // several lines shows one line at a time.
            let trimmed = secret.trim();
            forms.extend(
                secret
                    .lines()
                    .map(str::trim)
                    .filter(|line| line.len() >= MIN_LINE && *line != trimmed)
                    .map(str::to_owned),
            );
            if !trimmed.is_empty() && trimmed != secret {
                forms.push(trimmed.to_owned());
            }
            if !secret.is_empty() {
                forms.push(secret);
            }
        }
        forms.sort();
        forms.dedup();
        // Leftmost-longest: a secret that contains another is masked whole.
        let finder = (!forms.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&forms)
                    .ok()
            })
            .flatten();
        Self { finder }
    }

    pub(crate) fn mask(&self, text: &str) -> String {
        match &self.finder {
            Some(finder) => finder.replace_all(text, &vec![MASK; finder.patterns_len()]),
            None => text.to_owned(),
        }
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

    #[test]
    fn masks_the_forms_a_secret_takes_in_output() {
        let masker = Masker::new([
            "s3cret\r".to_owned(),
            "-----BEGIN KEY-----\nMIIEvQIBADAN\n-----END KEY-----\n".to_owned(),
        ]);
        // Lines lose their `\r`; a key shows a line at a time.
        assert_eq!(masker.mask("password s3cret"), "password ***");
        assert_eq!(masker.mask("  MIIEvQIBADAN"), "  ***");
        assert_eq!(masker.mask("-----"), "-----");
    }
}
