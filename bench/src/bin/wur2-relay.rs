//! `wur2-relay`: the bare relay baseline of the side-by-side benchmark (see
//! `wur2_bench::relay`). Loopback only by default; stops on SIGINT/SIGTERM or when killed.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

/// Forward each line a client sends to every other connected client. A benchmark baseline:
/// no limits, no accounts; never expose it.
#[derive(Parser, Debug)]
#[command(name = "wur2-relay", version)]
struct Cli {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wur2-relay: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(cli.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!(
                    "wur2-relay: error: cannot listen on {}: {error}",
                    cli.listen
                );
                return ExitCode::FAILURE;
            }
        };
        eprintln!("wur2-relay: listening on {}", cli.listen);
        tokio::select! {
            result = wur2_bench::relay::serve(listener) => {
                if let Err(error) = result {
                    eprintln!("wur2-relay: error: {error}");
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        }
    })
}
