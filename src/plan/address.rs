//! Engine addresses as docker takes them in `DOCKER_HOST`: `ssh://[user@]host[:port]`,
//! `tcp://host:port` and `unix:///path`. Parsed here only: the plan's checks
//! and runner's ssh read the same user, host and port.

use std::fmt::Write as _;

/// An engine address, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Ssh(Authority),
    Tcp(Authority),
    Unix(String),
}

/// `[user@]host[:port]`: nothing in it can be read as an ssh or docker option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Authority {
    /// As written: `deploy@web1:2222`, `[fd00::12]:22`.
    pub fn shown(&self) -> String {
        let mut out = String::new();
        if let Some(user) = &self.user {
            let _ = write!(out, "{user}@");
        }
        if self.host.contains(':') {
            let _ = write!(out, "[{}]", self.host);
        } else {
            out.push_str(&self.host);
        }
        if let Some(port) = self.port {
            let _ = write!(out, ":{port}");
        }
        out
    }
}

/// Reads an engine address; why not, in words, when it is not one.
pub fn parse(address: &str) -> Result<Address, &'static str> {
    let (scheme, rest) = address
        .split_once("://")
        .ok_or("it has no scheme (ssh://, unix:// or tcp://)")?;
    match scheme {
        "unix" if rest.starts_with('/') => Ok(Address::Unix(rest.to_owned())),
        "unix" => Err("a unix socket is an absolute path: unix:///var/run/docker.sock"),
        "ssh" => authority(rest).map(Address::Ssh),
        "tcp" => {
            let authority = authority(rest)?;
            if authority.port.is_none() {
                return Err("a tcp address needs a port: tcp://host:2376");
            }
            Ok(Address::Tcp(authority))
        }
        _ => Err("its scheme is not ssh://, unix:// or tcp://"),
    }
}

/// `[user@]host[:port]`, before any path.
fn authority(rest: &str) -> Result<Authority, &'static str> {
    let authority = rest.split('/').next().unwrap_or_default();
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => {
            let plain = !user.is_empty()
                && !user.starts_with('-')
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !plain {
                return Err("its user is not a plain name (letters, digits, `.`, `_`, `-`)");
            }
            (Some(user.to_owned()), host_port)
        }
        None => (None, authority),
    };
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((v6, "")) => (v6, None),
            Some((v6, tail)) => (v6, Some(tail.strip_prefix(':').unwrap_or("x"))),
            None => ("", None),
        }
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() || host.starts_with('-') {
        return Err("it names no host, or a host that starts with `-`");
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
    {
        return Err("its host has characters no host name has");
    }
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return Err("its port is not a number from 1 to 65535"),
        },
        None => None,
    };
    Ok(Authority {
        user,
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_docker_takes_and_nothing_an_option_parser_would_read() {
        for good in [
            "ssh://deploy@10.0.0.11",
            "ssh://web1",
            "ssh://deploy@web1.example.com:2222",
            "ssh://deploy@[fd00::12]:2222",
            "unix:///var/run/docker.sock",
            "tcp://10.0.0.11:2376",
        ] {
            assert!(parse(good).is_ok(), "{good}");
        }
        for bad in [
            "10.0.0.11",
            "http://web1",
            "ssh://",
            "ssh://-oProxyCommand=x",
            "ssh://-l@web1",
            "ssh://deploy@web1:0",
            "ssh://deploy@web1:ssh",
            "ssh://deploy@web 1",
            "ssh://de ploy@web1",
            "unix://relative.sock",
            "tcp://web1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_reads_user_host_and_port() {
        assert_eq!(
            parse("ssh://deploy@10.0.0.1:2222"),
            Ok(Address::Ssh(Authority {
                user: Some("deploy".into()),
                host: "10.0.0.1".into(),
                port: Some(2222)
            }))
        );
        assert_eq!(
            parse("ssh://web1"),
            Ok(Address::Ssh(Authority {
                user: None,
                host: "web1".into(),
                port: None
            }))
        );
        let Ok(Address::Ssh(v6)) = parse("ssh://deploy@[fd00::12]:2222") else {
            panic!("an IPv6 address");
        };
        assert_eq!(v6.host, "fd00::12");
        assert_eq!(v6.shown(), "deploy@[fd00::12]:2222");
    }
}
