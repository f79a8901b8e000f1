//! The site API (ARCHITECTURE.md, "Deployment"): what each site's agent serves and the
//! operator's CLI calls — HTTP/1.1 + JSON over TLS, authenticated by a client certificate
//! signed by the deployment CA or by a bearer token.
//!
//! - [`types`]: the request and response types, shared by server and client;
//! - [`routes`]: the route table, which the server dispatches on and from which the OpenAPI
//!   document (`schema/site-api.openapi.json`) is generated;
//! - [`server`]: the server, which authenticates every request before a [`server::Handler`]
//!   (the agent's, in the controller) sees it;
//! - [`client`]: the blocking client;
//! - [`tls`]: the deployment CA, the hosts' certificates, and the rustls configurations;
//! - [`ui`]: the dashboard's frame: its static files, page shell and sign-in page.
//!
//! Knows nothing of sites, providers or runs: the handler does.

pub mod client;
pub mod routes;
pub mod server;
pub mod tls;
pub mod types;
pub mod ui;

pub use client::{Client, ClientError, Credentials};
pub use routes::Op;
pub use server::{Caller, Handler, Reply, Request, Server, ServerConfig};
pub use tls::TlsFiles;
