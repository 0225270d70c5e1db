//! A relay for a host whose docker socket cannot be forwarded (its user
//! reaches docker only through sudo, or the host refuses forwarding): a local
//! socket where each connection is one `[sudo -n] docker system dial-stdio`
//! session on the host, a bounded number at once.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex};

use super::target::{reap, spawn};

/// Relay sessions at once on one connection: below sshd's `MaxSessions` (10 by
/// default), with room for the lock, the journal's copy and a probe.
pub(super) const MAX_SESSIONS: usize = 5;

/// Serves `socket`: each connection is piped to a new `words` process (a
/// session on the host), at most [`MAX_SESSIONS`] at once.
pub(super) fn relay(socket: &Path, words: Vec<String>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    let slots = Arc::new((Mutex::new(0usize), Condvar::new()));
    let words = Arc::new(words);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let slots = Arc::clone(&slots);
            let words = Arc::clone(&words);
            std::thread::spawn(move || {
                {
                    let (count, freed) = &*slots;
                    let mut count = count
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    while *count >= MAX_SESSIONS {
                        count = freed
                            .wait(count)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                    *count += 1;
                }
                pipe(stream, &words);
                let (count, freed) = &*slots;
                *count
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
                freed.notify_one();
            });
        }
    });
    Ok(())
}

/// Copies a local connection to a session's stdin, and its stdout back, until
/// either side ends.
fn pipe(stream: UnixStream, words: &[String]) {
    let Ok(mut child) = spawn(words, Stdio::piped(), Stdio::piped(), Stdio::null()) else {
        return;
    };
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        reap(&mut child);
        return;
    };
    let Ok(mut reader) = stream.try_clone() else {
        let _ = child.kill();
        reap(&mut child);
        return;
    };
    // Not `std::io::copy`: from a unix socket into a pipe it splices, and the
    // kernel then waits for a full buffer before passing anything on.
    let upstream = std::thread::spawn(move || {
        forward(&mut reader, &mut stdin);
        // The client is done writing: the session's stdin ends.
        drop(stdin);
    });
    let mut writer = stream;
    forward(&mut stdout, &mut writer);
    let _ = writer.shutdown(std::net::Shutdown::Both);
    let _ = child.kill();
    reap(&mut child);
    let _ = upstream.join();
}

/// Copies what `from` gives to `to` as it comes, until either side ends.
fn forward(from: &mut impl std::io::Read, to: &mut impl std::io::Write) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::time::Duration;

    use super::*;

    #[test]
    fn relays_a_connection_to_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("r.sock");
        relay(&socket, vec!["cat".to_owned()]).unwrap();
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(b"hello\n").unwrap();
        let mut buffer = [0u8; 6];
        stream.read_exact(&mut buffer).unwrap();
        assert_eq!(&buffer, b"hello\n");
    }
}
