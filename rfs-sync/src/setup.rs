//! `--setup RFS_ADDR`: records the server, checks that it answers, and pins
//! its key hash; with `--authenticate`, also creates the client's own key.
//!
//! Setup never reads standard input unless it is a terminal: a script must
//! name the key hash (`--rfs-keyhash`) or accept the presented one
//! (`--yes`). It succeeds before the operator grants the client anything,
//! and then prints the command that would.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use proto::pb;
use rfs_core::{DEFAULT_VOLUME, KeyHash};
use serde::Serialize;

use crate::args::{Args, DEFAULT_PORT};
use crate::config::{self, Config, Paths};
use crate::connect::{self, Security, Target};
use crate::durable;
use crate::exit::{Code, Failure};
use crate::identity;
use crate::output::Report;
use crate::remote::Remote;
use crate::state::RunLock;

/// The options of `--setup`.
#[derive(Debug, Clone)]
pub(crate) struct SetupOptions {
    pub(crate) address: String,
    pub(crate) port: u16,
    /// Whether `--port` was given (the address may name a port too).
    pub(crate) port_given: bool,
    pub(crate) rfs_keyhash: Option<KeyHash>,
    pub(crate) bind: Option<IpAddr>,
    pub(crate) insecure_plaintext: bool,
    pub(crate) authenticate: bool,
    pub(crate) force: bool,
    pub(crate) yes: bool,
}

impl SetupOptions {
    /// Returns the setup options given on the command line.
    pub(crate) fn from_args(args: &Args) -> Self {
        Self {
            address: args.rfs_addr.clone().unwrap_or_default(),
            port: args.port.unwrap_or(DEFAULT_PORT),
            port_given: args.port.is_some(),
            rfs_keyhash: args.rfs_keyhash,
            bind: args.bind,
            insecure_plaintext: args.insecure_plaintext,
            authenticate: args.authenticate,
            force: args.force,
            yes: args.yes,
        }
    }
}

/// What setup recorded and what the server said about this client.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SetupReport {
    pub(crate) server: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) rfs_keyhash: Option<KeyHash>,
    pub(crate) insecure_plaintext: bool,
    pub(crate) bind: Option<IpAddr>,
    pub(crate) volume: String,
    /// This client's address as the server sees it.
    pub(crate) client_address: String,
    pub(crate) authenticate: bool,
    pub(crate) client_keyhash: Option<KeyHash>,
    pub(crate) rights: Rights,
    /// The command that grants this client access, when it has none yet
    /// or authenticates by key.
    pub(crate) grant_hint: Option<String>,
}

/// A client's rights on the volume.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Rights {
    pub(crate) read: bool,
    pub(crate) list: bool,
    pub(crate) write: bool,
}

/// Runs `--setup`.
///
/// # Errors
///
/// Fails with exit code 2 when a key hash decision would need a terminal
/// that is not there, 6 when the server cannot be reached, 7 when it
/// presents another key than `--rfs-keyhash`, and 1 when a setup exists and
/// `--force` was not given.
pub(crate) async fn run(paths: &Paths, mut options: SetupOptions) -> Result<SetupReport> {
    let host = address_of(&mut options)?;
    let previous = previous_setup(paths, options.force)?;
    check_trust_is_decidable(&options)?;
    let _run_lock = RunLock::acquire(paths, None).await?;

    let client_keyhash = match options.authenticate {
        true => Some(identity::ensure(paths)?),
        false => None,
    };
    let connection = connect::connect(&target(paths, &host, &options)?).await?;
    let presented = connection.server_key;
    let identity = Remote::new(connection, DEFAULT_VOLUME).identify().await?;
    check_identity(presented, &identity);

    let server = connect::show_address(&host, options.port);
    let rfs_keyhash = match options.insecure_plaintext {
        true => None,
        false => Some(trust(&server, presented, &options).await?),
    };
    let config = Config {
        host,
        port: options.port,
        rfs_keyhash,
        bind: options.bind,
        insecure_plaintext: options.insecure_plaintext,
        authenticate: options.authenticate,
        volume: DEFAULT_VOLUME.to_owned(),
        group: config::default_group(),
        max_delete_percent: previous
            .as_ref()
            .and_then(|previous| previous.max_delete_percent),
    };
    record(paths, &config, previous.as_ref())?;
    Ok(report(config, identity, client_keyhash))
}

/// Returns the server's host, taking the port from the address when it
/// names one (`HOST:PORT`) and `--port` does not say otherwise.
fn address_of(options: &mut SetupOptions) -> Result<String> {
    let (host, port) = connect::parse_address(&options.address)?;
    match (port, options.port_given) {
        (Some(port), true) if port != options.port => {
            let message = format!(
                "{} names port {port}, but --port says {}",
                options.address, options.port
            );
            Err(Failure::new(Code::Usage, message).into())
        }
        (Some(port), _) => {
            options.port = port;
            Ok(host)
        }
        (None, _) => Ok(host),
    }
}

/// Refuses, before anything is written or dialled, a setup that would have
/// to ask about the server's key without a terminal to ask on.
fn check_trust_is_decidable(options: &SetupOptions) -> Result<()> {
    let needs_trust = !options.insecure_plaintext && options.rfs_keyhash.is_none();
    if !needs_trust || options.yes || std::io::stdin().is_terminal() {
        return Ok(());
    }
    let message = "standard input is not a terminal: give the server's key hash with \
                   --rfs-keyhash H (`rfsd keyhash` prints it on the server), \
                   or trust the key it presents with --yes";
    Err(Failure::new(Code::Usage, message).into())
}

/// Returns the existing setup, refusing to replace it without `--force`.
fn previous_setup(paths: &Paths, force: bool) -> Result<Option<Config>> {
    if !Config::exists(paths) {
        return Ok(None);
    }
    if !force {
        let message = format!(
            "already set up ({}); run with --force to replace the setup",
            paths.config_file.display()
        );
        return Err(Failure::new(Code::Error, message).into());
    }
    // A broken old file is replaced like any other.
    Ok(Config::load(paths).ok())
}

fn target(paths: &Paths, host: &str, options: &SetupOptions) -> Result<Target> {
    let security = match options.insecure_plaintext {
        true => Security::Plaintext,
        false => {
            let identity = match options.authenticate {
                true => Some(Arc::new(identity::load(paths)?)),
                false => None,
            };
            Security::Tls {
                pin: options.rfs_keyhash,
                identity,
            }
        }
    };
    Ok(Target {
        host: host.to_owned(),
        port: options.port,
        bind: options.bind,
        security,
    })
}

/// Warns when the key the server names differs from the one it presented
/// in the handshake (a proxy in between, or a misconfigured server).
fn check_identity(presented: Option<KeyHash>, identity: &pb::IdentifyReply) {
    let Some(presented) = presented else { return };
    if !identity.server_key_hash.is_empty() && identity.server_key_hash != presented.to_hex() {
        tracing::warn!(
            presented = %presented,
            named = %identity.server_key_hash,
            "server names another key hash than it presented"
        );
    }
}

/// Decides which server key to pin: the one given, the one presented with
/// `--yes`, or the one presented once the operator confirms it.
async fn trust(
    server: &str,
    presented: Option<KeyHash>,
    options: &SetupOptions,
) -> Result<KeyHash> {
    let presented = presented.context("the server presented no key")?;
    // With --rfs-keyhash the handshake already refused any other key.
    if options.rfs_keyhash.is_some() || options.yes {
        return Ok(presented);
    }
    eprintln!("rfsd at {server} presents key hash\n  {presented}");
    eprint!("Trust this key hash? [y/N] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("reading the answer")?
    .context("reading the answer")?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(presented),
        _ => Err(Failure::new(Code::Error, "server key not trusted; nothing was recorded").into()),
    }
}

/// Saves the configuration and starts the sync state over unless the
/// setup names the same server as before.
fn record(paths: &Paths, config: &Config, previous: Option<&Config>) -> Result<()> {
    config.save(paths)?;
    let same_server = previous.is_some_and(|old| {
        old.host == config.host && old.port == config.port && old.rfs_keyhash == config.rfs_keyhash
    });
    if !same_server {
        // The version goes first: alone, the manifest is ignored.
        let version = durable::remove_if_present(&paths.state_file())?;
        let base = durable::remove_if_present(&paths.base_file())?;
        if version || base {
            tracing::info!("sync state of the previous server removed");
        }
    }
    Ok(())
}

fn report(
    config: Config,
    identity: pb::IdentifyReply,
    client_keyhash: Option<KeyHash>,
) -> SetupReport {
    let rights = identity
        .volumes
        .iter()
        .find(|volume| volume.volume == config.volume)
        .and_then(|volume| volume.rights)
        .map(|rights| Rights {
            read: rights.read,
            list: rights.list,
            write: rights.write,
        })
        .unwrap_or_default();
    let grant_hint = match client_keyhash {
        Some(hash) => Some(format!(
            "rfsd client add {} --keyhash {hash}",
            identity.client_address
        )),
        None if !rights.read && !identity.grant_hint.is_empty() => Some(identity.grant_hint),
        None => None,
    };
    SetupReport {
        server: config.server_address(),
        host: config.host,
        port: config.port,
        rfs_keyhash: config.rfs_keyhash,
        insecure_plaintext: config.insecure_plaintext,
        bind: config.bind,
        volume: config.volume,
        client_address: identity.client_address,
        authenticate: config.authenticate,
        client_keyhash,
        rights,
        grant_hint,
    }
}

impl Report for SetupReport {
    const ACTION: &'static str = "setup";

    fn lines(&self) -> Vec<String> {
        let key = match self.rfs_keyhash {
            Some(hash) => format!("server key hash {hash}"),
            None => "insecure plaintext, no key check".to_owned(),
        };
        let mut lines = vec![format!("set up for rfsd at {} ({key})", self.server)];
        let rights = &self.rights;
        let granted: Vec<&str> = [
            (rights.read, "read"),
            (rights.list, "list"),
            (rights.write, "write"),
        ]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect();
        lines.push(match granted.is_empty() {
            true => format!(
                "{} has no rights on volume {} yet",
                self.client_address, self.volume
            ),
            false => format!(
                "{} may {} volume {}",
                self.client_address,
                granted.join(", "),
                self.volume
            ),
        });
        if let Some(hash) = self.client_keyhash {
            lines.push(format!("client key hash: {hash}"));
        }
        if let Some(hint) = &self.grant_hint {
            lines.push(format!("to grant access, run on the RFS host:\n  {hint}"));
        }
        lines
    }
}
