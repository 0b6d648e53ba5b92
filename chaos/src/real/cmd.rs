//! Running the operating system's network tools (`ip`, `nft`, `iptables`,
//! `tc`) and reporting their failures with the exact command line.

use std::process::{Command, Stdio};

use super::error::RealError;

/// Largest stderr excerpt kept in an error.
pub const MAX_STDERR_BYTES: usize = 2_000;

fn shown(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `program args`, returns its stdout; a non-zero exit is an error
/// naming the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, RealError> {
    run_with_input(program, args, None)
}

/// As [`run`], feeding `input` on stdin (for `nft -f -`).
pub fn run_with_input(
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, RealError> {
    use std::io::Write;
    let command = shown(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RealError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|source| RealError::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| RealError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if stderr.len() > MAX_STDERR_BYTES {
            let mut cut = MAX_STDERR_BYTES;
            while !stderr.is_char_boundary(cut) {
                cut -= 1;
            }
            stderr.truncate(cut);
        }
        return Err(RealError::Command {
            command,
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` can be started at all (it is installed).
pub fn exists(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
