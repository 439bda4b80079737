//! The integration tests: one binary, the real server, fake upstreams on 127.0.0.1.

mod admin_health;
mod browser;
mod cli;
mod clients;
mod files;
mod fixtures;
mod harness;
mod hex_client;
mod hex_fixtures;
mod hex_mirror;
mod index_servers;
mod live;
mod maintenance;
mod packages;
mod real_clients;
mod real_corpus;
mod resilience;
mod s3_mirror;
mod s3_server;
mod s3_store;
mod simple_api;
mod unreadable_pages;
mod web_hex;
mod web_search;
mod web_ui;
