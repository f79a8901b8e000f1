//! `resurgo example-app`: a tiny HTTP service for the quickstart, so the demo needs nothing
//! but this binary. `GET /healthz` answers `ok`; `GET /` says which site it runs at.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (default: $RESURGO_ADDRESS, else 127.0.0.1).
    #[arg(long, env = "RESURGO_ADDRESS", default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind((args.address, args.port))
        .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", args.address, args.port))?;
    let site = std::env::var("RESURGO_SITE").unwrap_or_else(|_| "-".into());
    let service = std::env::var("RESURGO_SERVICE").unwrap_or_else(|_| "example-app".into());
    eprintln!(
        "example-app `{service}` listening on {}:{} at site {site}",
        args.address, args.port
    );
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let site = site.clone();
        let service = service.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_err() {
                return;
            }
            // Read the rest of the request head: closing with unread input would reset the
            // connection and the client could lose the answer.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 0) && header.trim() != "" {
                header.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = match path.as_str() {
                "/healthz" => ("200 OK", "ok\n".to_string()),
                "/" => ("200 OK", format!("hello from {service} at site {site}\n")),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let _ = write!(stream, "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        });
    }
    Ok(crate::exit::code(crate::exit::OK))
}
