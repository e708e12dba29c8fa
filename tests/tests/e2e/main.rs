//! End-to-end tests: real `rfsd` and `rfs-sync` processes over real
//! sockets, each test with its own server, clients and temporary
//! directories. The harness lives in this package's library (`src/`).

// A writer and a reader set up and pull the whole tree on the first day.
mod day_one;
// A key made on one client reaches the server, its log and other clients.
mod key_distribution;
// Grants: read-only commits, clients without a grant, the suggested command.
mod permissions;
// Concurrent commits, and local changes meeting changes from the server.
mod conflicts;
// Deletions: held back by default, sent with --allow-delete, applied with care.
mod deletions;
// The --json results of update and commit.
mod json_output;
// Server key pinning over TLS, and the plaintext debugging mode.
mod transport;
// The daemon's first version and its clean shutdown on SIGTERM.
mod lifecycle;
// Files written on the RFS host by other programs become versions.
mod host_changes;
// History: rollback, verify (online and offline) and export.
mod history;
// Clients trusted by their own key instead of their address.
mod key_trust;
// A lost or damaged database: refused start-up and rebuild from the live tree.
mod index_loss;
// SIGTERM during a commit: completed or cleanly refused, exit 0.
mod shutdown;
// The commit lock: leases, fencing tokens, clear-lock, legacy lock files,
// many clients at once, and the client's own run lock.
mod locking;
// Crashes at named steps of a commit and of an update.
mod crash_points;
// SIGKILL at arbitrary moments during commits from three clients.
mod kill_loop;
// A full disk on the RFS host's state directory and on a client.
mod disk_full;
