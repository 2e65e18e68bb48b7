//! Server-side files for `/send <user> <path>`: opening and reading them off the engine's
//! loop, and only inside the directory the operator configured.
//!
//! The engine has already refused absolute paths, `..` and control characters; this module
//! refuses whatever still resolves outside the directory (a symlink) or is not a regular
//! file. File I/O is blocking, so every open and read runs on Tokio's blocking pool and
//! its result comes back to the engine's loop as a [`FileEvent`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use wur2_engine::{FileError, TransferId};

/// The result of an open or a read, for the engine's loop.
#[derive(Debug)]
pub(crate) enum FileEvent {
    /// The file is open (with its size), or why not.
    Opened(TransferId, Result<(File, u64), FileError>),
    /// A read finished: the file back (if there was one), and the bytes read or why not.
    Read(TransferId, Option<File>, Result<Bytes, FileError>),
}

/// The open server-side files, keyed by transfer.
pub(crate) struct Files {
    /// The files directory, canonical; `None`: server-side files are off.
    dir: Option<Arc<PathBuf>>,
    /// Each live transfer: its file, or `None` while an open or a read is under way.
    open: HashMap<TransferId, Option<File>>,
    events: mpsc::UnboundedSender<FileEvent>,
}

impl Files {
    pub(crate) fn new(dir: Option<PathBuf>, events: mpsc::UnboundedSender<FileEvent>) -> Files {
        Files {
            dir: dir.map(Arc::new),
            open: HashMap::new(),
            events,
        }
    }

    /// Starts opening `path` for `transfer`.
    pub(crate) fn open(&mut self, transfer: TransferId, path: String) {
        let events = self.events.clone();
        let Some(dir) = self.dir.clone() else {
            let _ = events.send(FileEvent::Opened(transfer, Err(FileError::NotAllowed)));
            return;
        };
        self.open.insert(transfer, None);
        tokio::task::spawn_blocking(move || {
            let _ = events.send(FileEvent::Opened(transfer, open_inside(&dir, &path)));
        });
    }

    /// Starts reading up to `max` bytes of `transfer`'s file.
    pub(crate) fn read(&mut self, transfer: TransferId, max: usize) {
        let events = self.events.clone();
        let Some(file) = self.open.get_mut(&transfer).and_then(Option::take) else {
            // Not open, or a read is already under way: the engine asked out of turn.
            let error = FileError::Io("read of a file that is not open".to_string());
            let _ = events.send(FileEvent::Read(transfer, None, Err(error)));
            return;
        };
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            let result = read_up_to(&mut file, max);
            let _ = events.send(FileEvent::Read(transfer, Some(file), result));
        });
    }

    /// The transfer ended: its file is closed now, or as soon as its open or read returns.
    pub(crate) fn close(&mut self, transfer: TransferId) {
        self.open.remove(&transfer);
    }

    /// Takes back a file from the blocking pool. Returns `false` when the transfer was
    /// closed meanwhile: then the result must not reach the engine.
    pub(crate) fn returned(&mut self, transfer: TransferId, file: Option<File>) -> bool {
        match self.open.get_mut(&transfer) {
            Some(slot) => {
                *slot = file;
                true
            }
            None => false,
        }
    }
}

/// Opens `relative` inside `dir` (canonical), refusing anything that resolves outside it
/// or is not a regular file.
fn open_inside(dir: &Path, relative: &str) -> Result<(File, u64), FileError> {
    let full = dir
        .join(relative)
        .canonicalize()
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => FileError::NotFound,
            io::ErrorKind::PermissionDenied => FileError::NotAllowed,
            _ => FileError::Io(error.to_string()),
        })?;
    if !full.starts_with(dir) {
        return Err(FileError::NotAllowed);
    }
    let file = File::open(&full).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => FileError::NotFound,
        io::ErrorKind::PermissionDenied => FileError::NotAllowed,
        _ => FileError::Io(error.to_string()),
    })?;
    let metadata = file
        .metadata()
        .map_err(|error| FileError::Io(error.to_string()))?;
    if !metadata.is_file() {
        return Err(FileError::NotAllowed);
    }
    Ok((file, metadata.len()))
}

/// Reads until `max` bytes or the end of the file.
fn read_up_to(file: &mut File, max: usize) -> Result<Bytes, FileError> {
    let mut buf = vec![0u8; max];
    let mut filled = 0;
    while filled < max {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(FileError::Io(error.to_string())),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outside_the_directory_are_refused() {
        let root = tempfile::tempdir().expect("temporary directory");
        let dir = root.path().join("files");
        std::fs::create_dir(&dir).expect("files dir");
        std::fs::write(dir.join("ok.txt"), b"hello").expect("a file");
        std::fs::write(root.path().join("secret.txt"), b"secret").expect("a secret");
        std::os::unix::fs::symlink(root.path().join("secret.txt"), dir.join("link.txt"))
            .expect("a symlink");
        std::fs::create_dir(dir.join("sub")).expect("a subdirectory");
        let dir = dir.canonicalize().expect("canonical");

        let (mut file, size) = open_inside(&dir, "ok.txt").expect("inside");
        assert_eq!(size, 5);
        assert_eq!(&read_up_to(&mut file, 3).expect("read")[..], b"hel");
        assert_eq!(&read_up_to(&mut file, 10).expect("read")[..], b"lo");
        assert_eq!(
            open_inside(&dir, "link.txt").err(),
            Some(FileError::NotAllowed)
        );
        assert_eq!(open_inside(&dir, "sub").err(), Some(FileError::NotAllowed));
        assert_eq!(
            open_inside(&dir, "missing").err(),
            Some(FileError::NotFound)
        );
    }
}
