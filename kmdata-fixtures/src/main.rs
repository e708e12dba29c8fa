//! Command-line front end that writes synthetic kmdata trees and key files
//! to disk for manual tests and benchmarks.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use kmdata_fixtures::{TreeSpec, new_key_file, write_tree};

/// Writes realistic synthetic nShield kmdata trees. File content is random
/// bytes, never key material.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes a flat kmdata tree into DIR, creating DIR if needed.
    ///
    /// Existing files with the same names are overwritten.
    Generate {
        /// The exact number of files to write.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        files: u64,
        /// The seed; the same seed and count always give the same tree.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The directory to write the tree into.
        dir: PathBuf,
    },
    /// Writes one new PKCS #11 key file into DIR and prints its name.
    ///
    /// Fails rather than overwrite a file of the same name.
    NewKey {
        /// The seed; the same seed always gives the same key file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The directory to write the key file into.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kmdata-fixtures: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand.
fn run(command: Command) -> Result<()> {
    match command {
        Command::Generate { files, seed, dir } => generate(files, seed, &dir),
        Command::NewKey { seed, dir } => new_key(seed, &dir),
    }
}

/// Writes a tree and prints a one-line summary of it.
fn generate(files: u64, seed: u64, dir: &Path) -> Result<()> {
    let files = usize::try_from(files).context("file count is too large")?;
    create_dir(dir)?;

    let spec = TreeSpec::new(files, seed);
    let context = || format!("writing tree into {}", dir.display());
    let written = write_tree(dir, &spec).with_context(context)?;

    let bytes: usize = written.iter().map(|file| file.content.len()).sum();
    println!(
        "wrote {} files, {bytes} bytes, to {}",
        written.len(),
        dir.display()
    );

    Ok(())
}

/// Writes one new key file and prints its name.
fn new_key(seed: u64, dir: &Path) -> Result<()> {
    create_dir(dir)?;

    let key = new_key_file(seed);
    let path = dir.join(&key.path);
    // A test that "generates a key" must never silently replace one.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&key.content)
        .with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(key.mode))
        .with_context(|| format!("setting mode of {}", path.display()))?;

    println!("{}", key.path);

    Ok(())
}

/// Creates `dir` and its parents unless they exist.
fn create_dir(dir: &Path) -> Result<()> {
    let context = || format!("creating {}", dir.display());
    fs::create_dir_all(dir).with_context(context)
}
