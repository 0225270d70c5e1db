//! What a value must be where it stands in a command runner builds: the rules
//! the plan's checks apply to the fields each kind names.

use super::model::Sp;
use super::template::Template;

/// A field whose value stands on a command line or in a path: its name, its
/// template, its rule.
pub(crate) type Field<'a> = (&'static str, &'a Sp<Template>, Rule);

/// What a value must be where it stands. A value is checked when the plan is
/// loaded (from `[vars]`, `--var`, the environment), or when its step starts (a
/// step's output); a value that breaks its rule is refused, never passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// A container's name or id, as docker allows them.
    Container,
    /// A user in a container: a name or id, and a group.
    User,
    /// An absolute path in a container.
    Workdir,
    /// An `http://` or `https://` URL.
    Url,
    /// A host path: no value climbs out of where the plan's text puts it.
    Path,
    /// An argument of a command in a container: anything but a secret.
    Argument,
    /// A TCP port, 1 to 65535.
    Port,
    /// An image reference: `name[:tag]`, `repo/name@sha256:…`.
    Image,
    /// Text runner shows when a check fails (`expect_body`, `expect_output`):
    /// anything but a secret.
    Shown,
    /// A volume as `docker run -v` takes it: `name:/path[:ro]`.
    Volume,
}

impl Rule {
    /// Why `value` breaks the rule, if it does. (`Path` is checked with the
    /// template, see `plan::validate`; here only what one value may not hold.)
    pub(crate) fn check(self, value: &str) -> Result<(), String> {
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        let name = |part: &str| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && part.chars().all(name_char)
        };
        let ok = match self {
            Rule::Container => {
                value
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                    && value.chars().all(name_char)
            }
            Rule::User => {
                let mut parts = value.splitn(2, ':');
                parts.next().is_some_and(name) && parts.next().is_none_or(name)
            }
            Rule::Workdir => value.starts_with('/') && !value.chars().any(char::is_control),
            Rule::Url => url_ok(value),
            Rule::Path => !value.chars().any(char::is_control),
            Rule::Argument | Rule::Shown => true,
            Rule::Volume => {
                !value.starts_with('-')
                    && value.contains(':')
                    && !value.chars().any(|c| c.is_control() || c.is_whitespace())
            }
            Rule::Port => value.parse::<u16>().is_ok_and(|p| p > 0),
            Rule::Image => {
                value
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
            }
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Rule::Container => "not a container name: letters, digits, `_`, `.` and `-`, starting with a letter or a digit",
            Rule::User => "not a user: a name or id (letters, digits, `_`, `.`, `-`), and `:group` if any",
            Rule::Workdir => "not an absolute path in the container",
            Rule::Url => "not an http:// or https:// URL",
            Rule::Path => "not a path: it holds control characters",
            Rule::Argument | Rule::Shown => "",
            Rule::Volume => "not a volume: `name:/path` or `/host/path:/path`, with no space, not starting with `-`",
            Rule::Port => "not a TCP port (1 to 65535)",
            Rule::Image => "not an image reference: letters, digits, `.`, `_`, `-`, `/`, `:` and `@`, starting with a letter or a digit",
        }
        .to_owned())
    }
}

/// An `http://` or `https://` URL with a host, and nothing a command line could
/// misread (it cannot start with `-`: it starts with the scheme).
fn url_ok(value: &str) -> bool {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    let Some(rest) = rest else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty()
        && !value.chars().any(|c| c.is_control() || c.is_whitespace())
        && value.parse::<ureq::http::Uri>().is_ok()
}
