//! Everything the test files share: the server under test, fake upstreams, the fixtures they
//! serve, and the real tools (Python clients, index servers, moto, rebar3, a browser). Test files
//! import from here and never from each other; the only tests here are the fixtures' own checks.
//!
//! `use crate::support::*;` brings in the server and the fake upstream index; the other modules
//! are imported by name.

pub mod fake_index;
pub mod fixtures;
pub mod hex_fixtures;
pub mod packages;
pub mod rebar3;
pub mod s3_server;
pub mod sandbox;
pub mod server;
pub mod tools;
pub mod web;

pub use fake_index::*;
pub use server::*;
