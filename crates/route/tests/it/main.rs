//! resurgo-route's integration tests, against real sockets, a real Knot DNS server and real
//! processes: one test binary, one module per route.

mod dns;
mod hook;
mod proxy;
mod support;
