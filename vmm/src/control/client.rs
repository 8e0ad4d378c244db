//! The client side: send one request, read one answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors talking to a control socket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No VMM listens there.
    #[error("cannot connect to the control socket {} (is the VMM running with --control-socket?)", .0.display())]
    Connect(PathBuf, #[source] std::io::Error),
    /// The exchange failed.
    #[error("the control socket {} did not answer", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    /// The request is not one line.
    #[error("a control request is one line; this one has a line break: {0:?}")]
    MultiLine(String),
    /// The answer is not JSON.
    #[error("the control socket answered something that is not JSON: {0}")]
    Answer(String),
}

/// Sends `line` to the control socket at `path` and returns the answer.
pub fn request(path: &Path, line: &str) -> Result<serde_json::Value, Error> {
    let line = line.trim_end();
    if line.contains(['\n', '\r']) {
        return Err(Error::MultiLine(line.to_owned()));
    }
    let stream = UnixStream::connect(path).map_err(|e| Error::Connect(path.to_owned(), e))?;
    let io = |e| Error::Io(path.to_owned(), e);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut writer = stream.try_clone().map_err(io)?;
    writeln!(writer, "{line}").map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|_| Error::Answer(answer.trim().to_owned()))
}
