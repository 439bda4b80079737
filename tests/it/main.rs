//! The integration tests: one binary, the real server, fake upstreams on 127.0.0.1.

mod access;
mod admin_health;
mod browser;
mod cli;
mod clients;
mod files;
mod hex_client;
mod hex_mirror;
mod hosted;
mod index_servers;
mod index_views;
mod live;
mod maintenance;
mod proxies;
mod real_clients;
mod real_corpus;
mod redirects;
mod resilience;
mod s3_mirror;
mod s3_store;
mod simple_api;
mod support;
mod unreadable_pages;
mod web_hex;
mod web_search;
mod web_ui;
