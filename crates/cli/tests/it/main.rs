//! End-to-end tests of the `resurgo` binary: real processes on loopback, real Git
//! repositories, the real controller. Each test owns a block of loopback addresses
//! (127.B.x.1) so tests can run in parallel.

mod api;
mod apply;
mod browser;
mod chaos;
mod cli;
mod controller;
mod cost;
mod dashboard;
mod demo;
mod dns_route;
mod drill;
mod hosts;
mod hosts_drill;
mod logs;
mod metrics;
mod netns;
mod notify;
mod output;
mod partition;
mod pg;
mod pg_failover;
mod pg_standby;
mod protect;
mod report_consumers;
mod runbook;
mod tidy;
mod trust;
mod util;
mod workspace;
mod workspace_cli;
