//! Protocol `rfs.v1`: the generated messages, the client service `Rfs` and
//! the local administration service `Admin`.
//!
//! The `.proto` source lives in `proto/rfs/v1/rfs.proto`; the code is generated
//! at build time with protox, so building needs no system `protoc`.

#![warn(missing_docs)]

/// Generated types and services of package `rfs.v1`.
pub mod pb {
    // Generated code carries no docs of its own for every item.
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("rfs.v1");
}

/// The encoded file descriptor set of `rfs.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rfs_v1_descriptor.bin"));

/// The largest data field of one chunk message, in bytes.
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// The largest gRPC message either side accepts, in bytes: one chunk plus
/// room for framing, or a page of entries.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The metadata key of a status that says why a write was refused beyond
/// its code.
pub const REFUSAL_KEY: &str = "rfs-refusal";

/// The [`REFUSAL_KEY`] value of an ABORTED write whose fencing token is no
/// longer the live grant of the volume's lock.
pub const REFUSAL_STALE_TOKEN: &str = "stale-lock-token";
