//! # wur2-client
//!
//! `wur2 chat`: a full-screen terminal client for people, on top of the server's JSON lines
//! mode (docs/PROTOCOL.md). The `wur2` binary calls [`run`] with its `chat` arguments.
//!
//! ## Shape
//!
//! - server lines are read into the engine's typed JSON schema,
//!   [`wur2_engine::json::ServerLine`], the same types the server renders them from.
//! - [`state`]: what is shown and what typing does — views, unread counts, input history,
//!   Tab completion, status, transfers — with no terminal and no socket, so it is unit-tested.
//! - [`files`]: received files rebuilt byte-exactly in the download directory; local files
//!   checked before upload.
//! - `net`: connect, `/mode json`, one-line login; a reader and a writer task per
//!   connection (uploads' raw bytes follow their `/send` line on the same writer).
//! - `app` and `ui`: the loop that ties keys, server lines and ticks to the state, and the
//!   ratatui drawing.
//!
//! The password is asked before the screen opens, without echo, and kept only to log in
//! again when the connection drops (reconnects back off from 0.5 s to 30 s). After a login
//! with the password the client keeps a resume token ([`token`]) in a file only its user
//! can read, and logs in with it (no password asked) until the server refuses it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod app;
mod endpoint;
pub mod files;
mod net;
pub mod state;
pub mod token;
mod ui;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};

use wur2_engine::{Password, is_valid_username};

use crate::net::Credentials;

/// `wur2 chat`: connect to a WUR2 server and chat in a full-screen terminal.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// The server's address; or the addresses of several nodes of one cluster, separated
    /// by commas (`a:6969,b:6969`): the client connects to the first that answers, and
    /// after losing its connection logs in again on whichever answers then.
    #[arg(long, env = "WUR2_SERVER", default_value = "127.0.0.1:6969")]
    pub server: String,
    /// Your username (asked when missing).
    #[arg(long, env = "WUR2_USER")]
    pub user: Option<String>,
    /// Create the account instead of logging in (the password is asked twice).
    #[arg(long)]
    pub register: bool,
    /// Where files people send you are saved (created when the first one arrives).
    #[arg(long, default_value = "downloads")]
    pub download_dir: PathBuf,
    /// Connect with TLS (the server's --tls-listen port, usually 6697) and verify its
    /// certificate against the bundled Mozilla roots.
    #[arg(long, env = "WUR2_TLS")]
    pub tls: bool,
    /// Trust only the CA certificates in this PEM file (a private or self-signed server);
    /// implies --tls.
    #[arg(long, env = "WUR2_CA")]
    pub ca: Option<PathBuf>,
    /// Where to keep the resume token that logs you in without the password (a file only
    /// you can read; default `~/.local/state/wur2/tokens/<user>@<server>`).
    #[arg(long, env = "WUR2_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Keep no resume token: always ask for the password.
    #[arg(long)]
    pub no_token: bool,
}

/// Asks for what is missing, logs in, then runs the full-screen client until the user
/// leaves. Errors before the screen opens (unreachable server, wrong password) come back
/// as one clear error.
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let ChatArgs {
        server: address,
        user,
        register,
        download_dir,
        tls,
        ca,
        token_file,
        no_token,
    } = args;
    let server = if tls || ca.is_some() {
        endpoint::Endpoint::tls(address.clone(), ca.as_deref())?
    } else {
        endpoint::Endpoint::plain(address.clone())
    };
    let user = tokio::task::spawn_blocking(move || ask_user(user))
        .await
        .context("the login prompt failed")??;
    let token_file = match (no_token, token_file) {
        (true, _) => None,
        (false, Some(path)) => Some(token::TokenFile::new(path)),
        (false, None) => token::TokenFile::default_for(&address, &user),
    };
    let mut credentials = Credentials::new(user, None, token_file);
    // A kept token first (a refused one is forgotten), then the password.
    let resumed = match credentials.token().filter(|_| !register) {
        None => None,
        Some(_) => {
            eprintln!(
                "Connecting to {server} as {} (resume token)...",
                credentials.user
            );
            match net::connect(&server, &credentials, false).await {
                Ok(session) => Some(session),
                Err(error) if credentials.token().is_none() => {
                    eprintln!("The resume token was refused ({error}); log in with the password.");
                    None
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("cannot log in on {server}"));
                }
            }
        }
    };
    let session = match resumed {
        Some(session) => session,
        None => {
            let user = credentials.user.clone();
            let password = tokio::task::spawn_blocking(move || ask_password(&user, register))
                .await
                .context("the login prompt failed")??;
            credentials.password = Some(password);
            eprintln!("Connecting to {server} as {}...", credentials.user);
            net::connect(&server, &credentials, register)
                .await
                .with_context(|| match register {
                    true => format!("cannot register on {server}"),
                    false => format!("cannot log in on {server}"),
                })?
        }
    };
    app::run(
        server,
        credentials,
        session,
        files::Downloads::new(download_dir),
    )
    .await
}

/// The username, from the flag or asked.
fn ask_user(user: Option<String>) -> anyhow::Result<String> {
    let user = match user.map(|user| user.trim().to_string()) {
        Some(user) if !user.is_empty() => user,
        _ => {
            print!("Username: ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the username")?;
            line.trim().to_string()
        }
    };
    if !is_valid_username(&user) {
        bail!("usernames are 1 to 32 letters, digits, '_', '-' or '.'");
    }
    Ok(user)
}

/// The password, read without echo (twice to register).
fn ask_password(user: &str, register: bool) -> anyhow::Result<Password> {
    let password = Password::new(
        rpassword::prompt_password(format!("Password for {user}: "))
            .context("cannot read the password")?,
    );
    if register {
        let again = Password::new(
            rpassword::prompt_password("Repeat the password: ")
                .context("cannot read the password")?,
        );
        if password.expose() != again.expose() {
            bail!("the passwords differ");
        }
    }
    Ok(password)
}
