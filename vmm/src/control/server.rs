//! The control socket server: a thread that accepts connections on a Unix
//! socket and answers each request line (see the module docs).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::protocol::{handle_line, Controllable};
use crate::machine::Stopper;

/// Longest request line accepted.
const MAX_LINE: usize = 4096;

/// Errors from starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be bound.
    #[error("cannot listen on the control socket {}", .0.display())]
    Bind(PathBuf, #[source] std::io::Error),
    /// The thread could not start.
    #[error("cannot start the control socket thread")]
    Thread(#[source] std::io::Error),
}

/// A running control socket; the socket file is removed when dropped.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Listens on `path` (a stale socket file there is replaced) and serves
    /// requests for `devices` until the process ends.
    pub fn start(
        path: &Path,
        devices: Vec<Arc<dyn Controllable>>,
        stopper: Stopper,
    ) -> Result<Self, Error> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_socket()
        }) {
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path).map_err(|e| Error::Bind(path.to_owned(), e))?;
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(stream) => serve(stream, &devices, &stopper),
                        Err(e) => log::warn!("control socket: cannot accept: {e}"),
                    }
                }
            })
            .map_err(Error::Thread)?;
        log::info!("control socket listening on {}", path.display());
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers the requests of one connection until it closes.
fn serve(stream: UnixStream, devices: &[Arc<dyn Controllable>], stopper: &Stopper) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            log::warn!("control socket: {e}");
            return;
        }
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        let answer = match Read::by_ref(&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
        {
            Ok(0) => return,
            Ok(n) if n > MAX_LINE => {
                serde_json::json!({"ok": false, "error": format!("request longer than {MAX_LINE} bytes")})
            }
            Ok(_) => {
                log::info!("control request: {}", line.trim());
                handle_line(&line, devices, stopper)
            }
            Err(e) => serde_json::json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        if writeln!(writer, "{answer}").is_err() {
            return;
        }
        if answer["ok"] == false && !line.ends_with('\n') {
            // An over-long or broken line: drop the connection rather than
            // resynchronise.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::tests::fake;
    use super::*;

    #[test]
    fn serves_requests_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let req = Arc::new(devices::legacy::StopRequest::new().unwrap());
        let server = ControlServer::start(&path, vec![fake("net0")], Stopper::new(req)).unwrap();
        let a = super::super::request(&path, "link down").unwrap();
        assert_eq!(a["ok"], true);
        let a = super::super::request(&path, "status net0").unwrap();
        assert_eq!(a["devices"][0]["link_up"], false);
        let long = "x".repeat(MAX_LINE + 10);
        let a = super::super::request(&path, &long).unwrap();
        assert!(a["error"].as_str().unwrap().contains("longer than"));
        drop(server);
        assert!(!path.exists(), "the socket file is removed");
    }
}
