//! Replays the committed seed corpus (and any crash file given in `WUR2_FUZZ_REPLAY`)
//! through the same checks as the fuzz targets, on any toolchain, without libFuzzer:
//! `cargo test --manifest-path fuzz/Cargo.toml`.

use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use wur2_fuzz::{engine, framer, parse_command, sanitize};

/// Runs one input through a target's check, decoding it as `fuzz_target!` does.
fn replay(target: &str, data: &[u8]) {
    match target {
        "parse_command" => parse_command::check(data),
        "sanitize" => sanitize::check(data),
        "framer" => framer::check(data),
        "engine" => {
            if let Ok(scenario) = engine::Scenario::arbitrary_take_rest(Unstructured::new(data)) {
                let trace = engine::run_traced(&scenario);
                if std::env::var_os("WUR2_FUZZ_TRACE").is_some() {
                    println!("{}", trace.join("\n"));
                }
            }
        }
        other => panic!("no target called {other}"),
    }
}

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .collect();
    files.sort();
    files
}

fn replay_seeds(target: &str) {
    let files = seeds(target);
    assert!(!files.is_empty(), "no seeds for {target}");
    for file in files {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        replay(target, &data);
    }
}

#[test]
fn parse_command_seeds_pass() {
    replay_seeds("parse_command");
}

#[test]
fn sanitize_seeds_pass() {
    replay_seeds("sanitize");
}

#[test]
fn framer_seeds_pass() {
    replay_seeds("framer");
}

#[test]
fn engine_seeds_pass() {
    replay_seeds("engine");
}

/// `WUR2_FUZZ_REPLAY=<target>:<file>` replays one file, for example a crash artifact;
/// with `WUR2_FUZZ_TRACE=1` (and `--nocapture`) an engine case prints what happened.
#[test]
fn replay_one_file_from_the_environment() {
    let Ok(spec) = std::env::var("WUR2_FUZZ_REPLAY") else {
        return;
    };
    let (target, file) = spec
        .split_once(':')
        .unwrap_or_else(|| panic!("WUR2_FUZZ_REPLAY={spec}: expected <target>:<file>"));
    let data = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    replay(target, &data);
}
