//! Server-side files for `/send <user> <path>`: which transfer has which file, and opening
//! and reading them only inside the directory the operator configured.
//!
//! The engine has already refused absolute paths, `..` and control characters; this module
//! refuses whatever still resolves outside the directory (a symlink) or is not a regular
//! file. File I/O is blocking: [`Files`] hands the driver a [`FileJob`] to run on its
//! runtime's blocking pool, and the driver gives the job's [`FileEvent`] back to
//! [`Files::handle`] on the engine's loop.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wur2_engine::{Engine, FileError, TransferId};

/// The result of an open or a read, for the engine's loop.
#[derive(Debug)]
pub enum FileEvent {
    /// The file is open (with its size), or why not.
    Opened(TransferId, Result<(File, u64), FileError>),
    /// A read finished: the file back (if there was one), and the bytes read or why not.
    Read(TransferId, Option<File>, Result<Bytes, FileError>),
}

/// Blocking file work: run it off the engine's loop, then pass its event to
/// [`Files::handle`].
pub type FileJob = Box<dyn FnOnce() -> FileEvent + Send + 'static>;

/// The open server-side files, keyed by transfer.
#[derive(Debug)]
pub struct Files {
    /// The files directory, canonical; `None`: server-side files are off.
    dir: Option<Arc<PathBuf>>,
    /// Each live transfer: its file, or `None` while an open or a read is under way.
    open: HashMap<TransferId, Option<File>>,
}

impl Files {
    /// Files served from `dir` (canonical, see [`prepare`](crate::prepare)); `None` turns
    /// them off.
    pub fn new(dir: Option<PathBuf>) -> Files {
        Files {
            dir: dir.map(Arc::new),
            open: HashMap::new(),
        }
    }

    /// The work that opens `path` for `transfer` ([`Output::OpenFile`](wur2_engine::Output::OpenFile)).
    pub fn open(&mut self, transfer: TransferId, path: String) -> FileJob {
        self.open.insert(transfer, None);
        let Some(dir) = self.dir.clone() else {
            return Box::new(move || FileEvent::Opened(transfer, Err(FileError::NotAllowed)));
        };
        Box::new(move || FileEvent::Opened(transfer, open_inside(&dir, &path)))
    }

    /// The work that reads up to `max` bytes of `transfer`'s file
    /// ([`Output::ReadFile`](wur2_engine::Output::ReadFile)).
    pub fn read(&mut self, transfer: TransferId, max: usize) -> FileJob {
        let Some(mut file) = self.open.get_mut(&transfer).and_then(Option::take) else {
            // Not open, or a read is already under way: the engine asked out of turn.
            let error = FileError::Io("read of a file that is not open".to_string());
            return Box::new(move || FileEvent::Read(transfer, None, Err(error)));
        };
        Box::new(move || {
            let result = read_up_to(&mut file, max);
            FileEvent::Read(transfer, Some(file), result)
        })
    }

    /// The transfer ended: its file is closed now, or as soon as its open or read returns.
    pub fn close(&mut self, transfer: TransferId) {
        self.open.remove(&transfer);
    }

    /// Gives a finished job's result to the engine, unless the transfer was closed
    /// meanwhile.
    pub fn handle(&mut self, event: FileEvent, engine: &mut Engine, now: Instant) {
        match event {
            FileEvent::Opened(transfer, Ok((file, size))) => {
                if self.returned(transfer, Some(file)) {
                    engine.handle_file_opened(transfer, Ok(size), now);
                }
            }
            FileEvent::Opened(transfer, Err(error)) => {
                if self.returned(transfer, None) {
                    self.close(transfer);
                    engine.handle_file_opened(transfer, Err(error), now);
                }
            }
            FileEvent::Read(transfer, file, result) => {
                if self.returned(transfer, file) {
                    match result {
                        Ok(data) => engine.handle_file_data(transfer, &data, now),
                        Err(error) => engine.handle_file_failed(transfer, error, now),
                    }
                }
            }
        }
    }

    /// Takes back a file from the blocking pool. Returns `false` when the transfer was
    /// closed meanwhile: then the result must not reach the engine.
    fn returned(&mut self, transfer: TransferId, file: Option<File>) -> bool {
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
///
/// Nothing here can block: opening a FIFO for reading waits for a writer, and a device
/// may wait for anything, so anything that is not a regular file is refused before it is
/// opened; the open itself is non-blocking and follows no symbolic link (the path is
/// canonical, so a link there now was put in since); and what was opened is checked
/// again, in case the name was swapped for something else in between.
pub fn open_inside(dir: &Path, relative: &str) -> Result<(File, u64), FileError> {
    let full = dir.join(relative).canonicalize().map_err(open_error)?;
    if !full.starts_with(dir) {
        return Err(FileError::NotAllowed);
    }
    if !std::fs::metadata(&full).map_err(open_error)?.is_file() {
        return Err(FileError::NotAllowed);
    }
    let file = open_without_blocking(&full).map_err(open_error)?;
    let metadata = file
        .metadata()
        .map_err(|error| FileError::Io(error.to_string()))?;
    if !metadata.is_file() {
        return Err(FileError::NotAllowed);
    }
    Ok((file, metadata.len()))
}

/// Opens `path` for reading without waiting (a FIFO without a writer opens at once) and
/// without following a symbolic link in its last component.
#[cfg(unix)]
fn open_without_blocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
}

/// Opens `path` for reading (no FIFOs to fear outside Unix).
#[cfg(not(unix))]
fn open_without_blocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

fn open_error(error: io::Error) -> FileError {
    match error.kind() {
        io::ErrorKind::NotFound => FileError::NotFound,
        io::ErrorKind::PermissionDenied => FileError::NotAllowed,
        _ => FileError::Io(error.to_string()),
    }
}

/// Reads until `max` bytes or the end of the file.
pub fn read_up_to(file: &mut File, max: usize) -> Result<Bytes, FileError> {
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

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let root = tempfile::tempdir().expect("temporary directory");
        let dir = root.path().canonicalize().expect("canonical");
        let made = std::process::Command::new("mkfifo")
            .arg(dir.join("fifo"))
            .status()
            .expect("run mkfifo");
        assert!(made.success(), "mkfifo failed");
        // On another thread: were the open to block, this test would fail, not hang.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(open_inside(&dir, "fifo").err());
        });
        let refused = result
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("opening a FIFO returns at once");
        assert_eq!(refused, Some(FileError::NotAllowed));
    }
}
