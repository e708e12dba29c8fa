//! rfsd, the RFS daemon: serves versioned kmdata volumes over gRPC with
//! per-client grants, a lock it manages itself, and a history of every
//! change.
//!
//! `main.rs` only parses the command line, sets up logging, calls
//! [`daemon::prepare`] and [`server::run`], and turns failure into an exit
//! code. See ARCHITECTURE.md for the map.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod admin;
pub mod admin_cli;
pub mod clear_lock;
pub mod cli;
pub mod config;
pub mod conn;
mod crash;
pub mod daemon;
pub mod demo;
pub mod error;
pub mod grants;
pub mod history_cli;
pub mod limits;
pub mod lock;
pub mod lock_file;
pub mod offline;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod timefmt;
pub mod tls;
pub mod verify;
pub mod volume;
pub mod watch;
