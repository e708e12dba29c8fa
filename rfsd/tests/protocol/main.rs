//! Protocol tests: a real in-process rfsd on 127.0.0.1:0 over real TCP
//! (plaintext, so the tests can speak raw gRPC), driven with hostile and
//! conflicting requests that rfs-sync itself would never send.

// The in-process daemon and a client bound to a chosen source address.
mod harness;
// Paths, digests and limits: bad input is refused and changes nothing.
mod hostile_input;
// Commits: conflicts, the lock token, and changes made on the host.
mod commits;
// Grants: denials name the command that would allow the request.
mod grants;
// The lock: legacy lock files, and tokens voided by a restart.
mod locking;
