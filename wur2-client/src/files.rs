//! Files on this machine: rebuilding received files in the download directory from their
//! chunks, and checking a local file before it is uploaded. It owns the partial files and
//! must never write outside the download directory, whatever name a sender picks.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use wur2_engine::is_valid_file_name;

/// Longest file name we create, in bytes (file systems stop at 255).
const MAX_NAME_BYTES: usize = 200;

/// Suffix of a file still arriving; it gets its real name only once every byte is there.
const PART_SUFFIX: &str = ".part";

/// Files being received, by transfer id.
#[derive(Debug)]
pub struct Downloads {
    dir: PathBuf,
    active: HashMap<u64, Download>,
}

/// One file being received.
#[derive(Debug)]
struct Download {
    name: String,
    size: u64,
    received: u64,
    part: PathBuf,
    target: PathBuf,
    file: Option<File>,
    /// Why the file can no longer be completed (the transfer still has to end).
    failed: Option<String>,
}

/// How a received file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Every byte arrived and the file is in place.
    Saved {
        /// Where it is.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// The file is incomplete or could not be written; nothing is left behind.
    Failed {
        /// The name the sender gave.
        name: String,
        /// Why, for a person.
        reason: String,
    },
}

impl Downloads {
    /// Receives into `dir` (created when the first file arrives).
    pub fn new(dir: PathBuf) -> Downloads {
        Downloads {
            dir,
            active: HashMap::new(),
        }
    }

    /// The directory files are saved in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file offer: creates its partial file. Returns the path it will have once complete,
    /// or why it cannot be received.
    pub fn offer(&mut self, id: u64, name: &str, size: u64) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|error| format!("cannot create {}: {error}", self.dir.display()))?;
        let taken: Vec<&Path> = self.active.values().map(|d| d.target.as_path()).collect();
        let target = free_path(&self.dir, &safe_file_name(name), &taken);
        let mut part = target.clone().into_os_string();
        part.push(PART_SUFFIX);
        let part = PathBuf::from(part);
        let file = File::create(&part)
            .map_err(|error| format!("cannot create {}: {error}", part.display()))?;
        self.active.insert(
            id,
            Download {
                name: name.to_string(),
                size,
                received: 0,
                part,
                target: target.clone(),
                file: Some(file),
                failed: None,
            },
        );
        Ok(target)
    }

    /// A chunk of base64 data for transfer `id`. Returns the bytes received so far, or the
    /// reason the file just failed (the caller cancels the transfer); `None` for a transfer
    /// that is not ours or already failed.
    pub fn chunk(&mut self, id: u64, data: &str) -> Option<Result<u64, String>> {
        let download = self.active.get_mut(&id)?;
        if download.failed.is_some() {
            return None;
        }
        let result = download.append(data);
        if let Err(reason) = &result {
            download.failed = Some(reason.clone());
            download.file = None;
        }
        Some(result)
    }

    /// The sender finished: checks that exactly `size` bytes arrived and gives the file its
    /// name. `None` for a transfer that is not ours.
    pub fn done(&mut self, id: u64, size: Option<u64>) -> Option<Finished> {
        let mut download = self.active.remove(&id)?;
        let name = download.name.clone();
        let result = download.finish(size);
        Some(match result {
            Ok(size) => Finished::Saved {
                path: download.target,
                size,
            },
            Err(reason) => {
                let _ = std::fs::remove_file(&download.part);
                Finished::Failed { name, reason }
            }
        })
    }

    /// The transfer stopped early: removes the partial file.
    pub fn cancelled(&mut self, id: u64, reason: &str) -> Option<Finished> {
        let download = self.active.remove(&id)?;
        drop(download.file);
        let _ = std::fs::remove_file(&download.part);
        Some(Finished::Failed {
            name: download.name,
            reason: format!("cancelled: {reason}"),
        })
    }

    /// The connection is gone: every file still arriving is incomplete.
    pub fn abort_all(&mut self, reason: &str) -> Vec<Finished> {
        let ids: Vec<u64> = self.active.keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| self.cancelled(id, reason))
            .collect()
    }
}

impl Download {
    fn append(&mut self, data: &str) -> Result<u64, String> {
        let bytes = STANDARD
            .decode(data)
            .map_err(|error| format!("a chunk is not valid base64 ({error})"))?;
        let received = self.received + bytes.len() as u64;
        if received > self.size {
            return Err(format!(
                "more bytes than announced ({received} of {})",
                self.size
            ));
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| "the file is closed".to_string())?;
        file.write_all(&bytes)
            .map_err(|error| format!("cannot write {}: {error}", self.part.display()))?;
        self.received = received;
        Ok(received)
    }

    fn finish(&mut self, size: Option<u64>) -> Result<u64, String> {
        if let Some(reason) = self.failed.take() {
            return Err(reason);
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| "the file is closed".to_string())?;
        file.sync_all()
            .map_err(|error| format!("cannot write {}: {error}", self.part.display()))?;
        drop(file);
        let expected = size.unwrap_or(self.size);
        if expected != self.size {
            return Err(format!(
                "size changed from {} to {expected} bytes",
                self.size
            ));
        }
        if self.received != expected {
            return Err(format!(
                "incomplete: {} of {expected} bytes arrived",
                self.received
            ));
        }
        let on_disk = std::fs::metadata(&self.part)
            .map_err(|error| format!("cannot check {}: {error}", self.part.display()))?
            .len();
        if on_disk != expected {
            return Err(format!("{on_disk} of {expected} bytes on disk"));
        }
        std::fs::rename(&self.part, &self.target)
            .map_err(|error| format!("cannot rename {}: {error}", self.part.display()))?;
        Ok(expected)
    }
}

/// A sender's file name made safe to create in our directory: one path component of
/// letters, digits, `.`, `-`, `_` (others become `_`), not hidden, not empty.
pub fn safe_file_name(name: &str) -> String {
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while safe.starts_with('.') {
        safe.remove(0);
    }
    while safe.len() > MAX_NAME_BYTES {
        safe.pop();
    }
    if safe.is_empty() {
        safe.push_str("file");
    }
    safe
}

/// `dir/name`, or `dir/stem-N.ext` with the smallest N that is neither on disk nor in
/// `taken`, so a new file never replaces an old one.
fn free_path(dir: &Path, name: &str, taken: &[&Path]) -> PathBuf {
    let is_free = |path: &Path| {
        let mut part = path.as_os_str().to_owned();
        part.push(PART_SUFFIX);
        !path.exists() && !Path::new(&part).exists() && !taken.contains(&path)
    };
    let first = dir.join(name);
    if is_free(&first) {
        return first;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    (1u32..)
        .map(|n| dir.join(format!("{stem}-{n}{ext}")))
        .find(|path| is_free(path))
        .unwrap_or(first)
}

/// A local file ready to upload: the one-word name the server accepts and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Where it is.
    pub path: PathBuf,
    /// The name sent to the server: one word the server accepts (`is_valid_file_name`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Checks that `path` is a regular file we can read and names it for the server.
pub fn local_file(path: &Path) -> Result<LocalFile, String> {
    let metadata =
        std::fs::metadata(path).map_err(|error| format!("{}: {error}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    File::open(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The upload line is split on spaces: the name is one word.
    let spaced: String = name
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    let name = if is_valid_file_name(&spaced) {
        spaced
    } else {
        safe_file_name(&name)
    };
    Ok(LocalFile {
        path: path.to_path_buf(),
        name,
        size: metadata.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    #[test]
    fn a_file_is_rebuilt_byte_exact_from_its_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut downloads = Downloads::new(dir.path().join("in"));
        let target = downloads.offer(1, "data.bin", 5).unwrap();
        assert_eq!(downloads.chunk(1, &b64(&[0, 255, 10])), Some(Ok(3)));
        assert_eq!(downloads.chunk(1, &b64(&[13, 7])), Some(Ok(5)));
        assert_eq!(
            downloads.done(1, Some(5)),
            Some(Finished::Saved {
                path: target.clone(),
                size: 5
            })
        );
        assert_eq!(std::fs::read(&target).unwrap(), vec![0, 255, 10, 13, 7]);
        assert_eq!(std::fs::read_dir(dir.path().join("in")).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_byte_fails_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut downloads = Downloads::new(dir.path().to_path_buf());
        downloads.offer(1, "a.txt", 4).unwrap();
        downloads.chunk(1, &b64(b"abc")).unwrap().unwrap();
        let Some(Finished::Failed { reason, .. }) = downloads.done(1, Some(4)) else {
            panic!("an incomplete file must fail");
        };
        assert!(reason.contains("3 of 4"), "{reason}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn extra_bytes_and_bad_base64_fail_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut downloads = Downloads::new(dir.path().to_path_buf());
        downloads.offer(1, "a", 2).unwrap();
        assert!(matches!(downloads.chunk(1, &b64(b"abc")), Some(Err(_))));
        assert_eq!(downloads.chunk(1, &b64(b"a")), None);
        assert!(matches!(
            downloads.done(1, Some(2)),
            Some(Finished::Failed { .. })
        ));
        downloads.offer(2, "b", 2).unwrap();
        assert!(matches!(downloads.chunk(2, "!!!"), Some(Err(_))));
    }

    #[test]
    fn cancelled_and_aborted_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut downloads = Downloads::new(dir.path().to_path_buf());
        downloads.offer(1, "a", 10).unwrap();
        downloads.offer(2, "b", 10).unwrap();
        assert!(matches!(
            downloads.cancelled(1, "bob left"),
            Some(Finished::Failed { .. })
        ));
        assert_eq!(downloads.abort_all("connection lost").len(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(downloads.done(2, Some(10)), None);
    }

    #[test]
    fn names_never_leave_the_download_directory() {
        assert_eq!(safe_file_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_file_name(".bashrc"), "bashrc");
        assert_eq!(safe_file_name("..."), "file");
        assert_eq!(safe_file_name("a\u{1b}[31m.txt"), "a__31m.txt");
        assert_eq!(safe_file_name("résumé.pdf"), "résumé.pdf");
    }

    #[test]
    fn a_new_file_never_replaces_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"old").unwrap();
        let mut downloads = Downloads::new(dir.path().to_path_buf());
        let first = downloads.offer(1, "a.txt", 0).unwrap();
        let second = downloads.offer(2, "a.txt", 0).unwrap();
        assert_eq!(first, dir.path().join("a-1.txt"));
        assert_eq!(second, dir.path().join("a-2.txt"));
        assert!(matches!(
            downloads.done(1, Some(0)),
            Some(Finished::Saved { .. })
        ));
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"old");
    }

    #[test]
    fn local_files_get_a_one_word_name_and_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my notes.txt");
        std::fs::write(&path, b"hello").unwrap();
        let file = local_file(&path).unwrap();
        assert_eq!(file.name, "my_notes.txt");
        assert_eq!(file.size, 5);
        assert!(local_file(dir.path()).is_err());
        assert!(local_file(&dir.path().join("missing")).is_err());
    }
}
