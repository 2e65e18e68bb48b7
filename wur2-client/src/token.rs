//! The resume token `wur2 chat` keeps between runs: after a login with the password it
//! asks the server for one (`/token`) and writes it to a file only its user can read; the
//! next run (and every reconnect) logs in with `/resume`, without asking for the password
//! and without the server's password hashing. A refused token is forgotten (deleted) and
//! the password asked for again.

use std::io::Write;
use std::path::{Path, PathBuf};

use wur2_engine::Password;

/// Where a resume token is kept.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    /// The file at `path`.
    pub fn new(path: PathBuf) -> TokenFile {
        TokenFile { path }
    }

    /// The default file for `user` on `server`: under `$XDG_STATE_HOME/wur2/tokens/` (or
    /// `~/.local/state/wur2/tokens/`); `None` without a home directory.
    pub fn default_for(server: &str, user: &str) -> Option<TokenFile> {
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                let home = std::env::var_os("HOME").filter(|dir| !dir.is_empty())?;
                Some(Path::new(&home).join(".local").join("state"))
            })?;
        // Only characters safe in a file name: the server's address may hold ':' and ','.
        let server: String = server
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("{}@{server}", user.to_ascii_lowercase());
        Some(TokenFile::new(state.join("wur2").join("tokens").join(name)))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token kept, if there is a readable one.
    pub fn load(&self) -> Option<Password> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let token = text.trim();
        (!token.is_empty()).then(|| Password::new(token))
    }

    /// Keeps `token`, readable by this user only (the file `0600`, its directory `0700`).
    pub fn save(&self, token: &Password) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir)?;
        }
        // Written aside (a new file: never one put there to be followed), then renamed: a
        // reader never sees half a token.
        let mut aside = self.path.clone().into_os_string();
        aside.push(".new");
        let aside = PathBuf::from(aside);
        let _ = std::fs::remove_file(&aside);
        let mut file = open_private(&aside)?;
        file.write_all(token.expose().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&aside, &self.path)
    }

    /// Forgets the token (a refused one).
    pub fn forget(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_token_is_read_back_and_only_its_user_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("state").join("alice@host"));
        assert!(file.load().is_none());
        file.save(&Password::new("00ff")).unwrap();
        assert_eq!(
            file.load().map(|t| t.expose().to_string()).as_deref(),
            Some("00ff")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let parent = file.path().parent().unwrap();
            let mode = std::fs::metadata(parent).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        file.forget();
        assert!(file.load().is_none());
    }

    #[test]
    fn the_default_file_names_the_user_and_a_file_safe_server() {
        let file = TokenFile::default_for("a:6969,b:6969", "Alice");
        if let Some(file) = file {
            let name = file
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert_eq!(name, "alice@a_6969_b_6969");
        }
    }
}
