//! The control socket server: accepts connections on a Unix socket and
//! answers each request line (see the module docs), one thread per client,
//! until the server is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::protocol::{handle_line, Controllable};
use crate::machine::Stopper;

/// Longest request line accepted.
const MAX_LINE: usize = 4096;
/// Most clients served at once; more are told to come back later.
const MAX_CLIENTS: usize = 16;
/// A client that sends nothing for this long is disconnected, so that an
/// idle client cannot hold a thread for ever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors from starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process is serving on that path.
    #[error("the control socket {} is in use by another running VMM", .0.display())]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{} exists and is not a socket; the control socket cannot replace it", .0.display())]
    NotASocket(PathBuf),
    /// The socket could not be bound.
    #[error("cannot listen on the control socket {}", .0.display())]
    Bind(PathBuf, #[source] std::io::Error),
    /// The thread could not start.
    #[error("cannot start the control socket thread")]
    Thread(#[source] std::io::Error),
}

/// A running control socket. Dropping it stops the server, disconnects its
/// clients and removes the socket file (if it is still the one it made).
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    /// Device and inode of the socket file this server created.
    file_id: Option<(u64, u64)>,
    shutdown: Arc<AtomicBool>,
    /// The listening socket, kept to wake the acceptor with `shutdown(2)`
    /// (not through the socket file, which someone may have removed).
    listener: UnixListener,
    acceptor: Option<JoinHandle<()>>,
}

/// Removes a stale socket file at `path`, refusing to touch a live one or
/// anything that is not a socket.
fn clear_stale(path: &Path) -> Result<(), Error> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket(path.to_owned()));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(Error::InUse(path.to_owned()));
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl ControlServer {
    /// Listens on `path` (owner-only permissions; a stale socket file there
    /// is replaced, a live one is an error) and serves requests for
    /// `devices`.
    pub fn start(
        path: &Path,
        devices: Vec<Arc<dyn Controllable>>,
        stopper: Stopper,
    ) -> Result<Self, Error> {
        clear_stale(path)?;
        let listener = UnixListener::bind(path).map_err(|e| Error::Bind(path.to_owned(), e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::Bind(path.to_owned(), e))?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = shutdown.clone();
        let devices: Arc<[Arc<dyn Controllable>]> = devices.into();
        let accepting = listener
            .try_clone()
            .map_err(|e| Error::Bind(path.to_owned(), e))?;
        let acceptor = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || accept_loop(&accepting, &devices, &stopper, &flag))
            .map_err(Error::Thread)?;
        log::info!("control socket listening on {}", path.display());
        Ok(Self {
            path: path.to_owned(),
            file_id: file_id(path),
            shutdown,
            listener,
            acceptor: Some(acceptor),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Release);
        // Wake the acceptor: on Linux, shutting a listening socket down
        // makes a blocked accept() fail at once.
        // SAFETY: shutdown(2) on a descriptor this struct owns; it changes
        // no memory and the descriptor stays open until `listener` drops.
        let r = unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if r != 0 {
            log::warn!(
                "control socket: cannot shut the listener down ({}); waking it with a connection",
                std::io::Error::last_os_error()
            );
            let _ = UnixStream::connect(&self.path);
        }
        if let Some(acceptor) = self.acceptor.take() {
            if acceptor.join().is_err() {
                log::error!("the control socket thread panicked");
            }
        }
        if self.file_id.is_some() && file_id(&self.path) == self.file_id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn accept_loop(
    listener: &UnixListener,
    devices: &Arc<[Arc<dyn Controllable>]>,
    stopper: &Stopper,
    shutdown: &Arc<AtomicBool>,
) {
    let clients = Arc::new(AtomicUsize::new(0));
    let mut workers: Vec<(UnixStream, JoinHandle<()>)> = Vec::new();
    for conn in listener.incoming() {
        if shutdown.load(Ordering::Acquire) {
            break;
        }
        workers.retain(|(_, w)| !w.is_finished());
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("control socket: cannot accept: {e}");
                continue;
            }
        };
        if clients.load(Ordering::Acquire) >= MAX_CLIENTS {
            let _ = writeln!(
                stream,
                "{}",
                serde_json::json!({"ok": false, "error": format!("{MAX_CLIENTS} clients are connected; try again later")})
            );
            continue;
        }
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let (devices, stopper, count) = (devices.clone(), stopper.clone(), clients.clone());
        count.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new()
            .name("control-client".into())
            .spawn(move || {
                serve(stream, &devices, &stopper);
                count.fetch_sub(1, Ordering::AcqRel);
            });
        match spawned {
            Ok(worker) => workers.push((handle, worker)),
            Err(e) => {
                clients.fetch_sub(1, Ordering::AcqRel);
                log::warn!("control socket: cannot serve a client: {e}");
            }
        }
    }
    // Disconnect the clients still connected and wait for their threads.
    for (stream, worker) in workers {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        let _ = worker.join();
    }
}

/// Answers the requests of one connection until it closes, goes idle, or
/// sends a line that cannot be read.
fn serve(stream: UnixStream, devices: &[Arc<dyn Controllable>], stopper: &Stopper) {
    if let Err(e) = stream.set_read_timeout(Some(IDLE_TIMEOUT)) {
        log::warn!("control socket: {e}");
        return;
    }
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
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return
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

    fn stopper() -> Stopper {
        Stopper::new(Arc::new(devices::legacy::StopRequest::new().unwrap()))
    }

    #[test]
    fn serves_requests_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let server = ControlServer::start(&path, vec![fake("net0")], stopper()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let a = super::super::request(&path, "link down").unwrap();
        assert_eq!(a["ok"], true);
        let a = super::super::request(&path, "status net0").unwrap();
        assert_eq!(a["devices"][0]["link_up"], false);
        // Two requests in one would run the second unseen.
        let two = super::super::request(&path, "status\nquit").unwrap_err();
        assert!(two.to_string().contains("one line"), "{two}");
        let long = "x".repeat(MAX_LINE + 10);
        let a = super::super::request(&path, &long).unwrap();
        assert!(a["error"].as_str().unwrap().contains("longer than"));
        drop(server);
        assert!(!path.exists(), "the socket file is removed");
    }

    #[test]
    fn an_idle_client_does_not_block_others_and_drop_disconnects_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let server = ControlServer::start(&path, vec![fake("net0")], stopper()).unwrap();
        let mut idle = UnixStream::connect(&path).unwrap();
        let a = super::super::request(&path, "status").unwrap();
        assert_eq!(a["ok"], true, "served while another client idles");
        drop(server);
        // The idle client sees its connection closed.
        idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(idle.read(&mut buf).unwrap_or(0), 0);
    }

    /// Stopping must not depend on the socket file: someone may have
    /// removed it (or bound another socket there) while the VM ran.
    #[test]
    fn stops_when_its_socket_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let server = ControlServer::start(&path, vec![fake("net0")], stopper()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (done, stopped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(server);
            let _ = done.send(());
        });
        assert!(
            stopped.recv_timeout(Duration::from_secs(30)).is_ok(),
            "dropping the server hung in accept()"
        );
    }

    #[test]
    fn a_live_socket_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let first = ControlServer::start(&path, vec![fake("net0")], stopper()).unwrap();
        let second = ControlServer::start(&path, vec![fake("net1")], stopper());
        assert!(matches!(second, Err(Error::InUse(_))));
        let a = super::super::request(&path, "status").unwrap();
        assert_eq!(a["devices"][0]["id"], "net0");
        drop(first);
        // A stale socket file (nobody listening) is replaced.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        let third = ControlServer::start(&path, vec![fake("net2")], stopper()).unwrap();
        assert_eq!(
            super::super::request(&path, "status").unwrap()["devices"][0]["id"],
            "net2"
        );
        drop(third);
        std::fs::write(&path, "not a socket").unwrap();
        assert!(matches!(
            ControlServer::start(&path, vec![], stopper()),
            Err(Error::NotASocket(_))
        ));
    }
}
