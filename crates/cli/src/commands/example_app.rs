//! `resurgo example-app`: a tiny HTTP service for the quickstart, so the demo needs nothing
//! but this binary. `GET /healthz` answers `ok`; `GET /` says which site it runs at. With
//! `--db`, it keeps a SQLite database and writes a numbered row at a steady pace — a canary
//! whose last acknowledged write shows, after a restore, how much data was lost.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (default: $RESURGO_ADDRESS, else 127.0.0.1).
    #[arg(long, env = "RESURGO_ADDRESS", default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Keep a SQLite database here and write a canary row to it at a steady pace.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Time between canary writes.
    #[arg(long, default_value = "100ms", value_parser = crate::common::positive_duration)]
    pub write_every: Duration,
}

/// The newest canary write: its sequence number and time (RFC 3339).
type Last = Arc<Mutex<Option<(i64, String)>>>;

fn open_db(path: &PathBuf) -> anyhow::Result<rusqlite::Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let conn = rusqlite::Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS canary(seq INTEGER PRIMARY KEY, at TEXT NOT NULL, site TEXT NOT NULL);",
    )?;
    Ok(conn)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind((args.address, args.port))
        .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", args.address, args.port))?;
    let site = std::env::var("RESURGO_SITE").unwrap_or_else(|_| "-".into());
    let service = std::env::var("RESURGO_SERVICE").unwrap_or_else(|_| "example-app".into());
    let last: Last = Arc::new(Mutex::new(None));
    if let Some(db) = &args.db {
        let conn = open_db(db)?;
        let start: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM canary", [], |r| r.get(0))?;
        let (last, site, every) = (last.clone(), site.clone(), args.write_every);
        std::thread::spawn(move || {
            let mut seq = start;
            loop {
                seq += 1;
                let at = resurgo_controller::events::now_rfc3339();
                match conn.execute(
                    "INSERT INTO canary(seq, at, site) VALUES (?1, ?2, ?3)",
                    (seq, &at, &site),
                ) {
                    // Acknowledged: committed (synchronous=FULL) before we record it.
                    Ok(_) => *last.lock().expect("not poisoned") = Some((seq, at)),
                    Err(e) => eprintln!("canary write {seq} failed: {e}"),
                }
                std::thread::sleep(every);
            }
        });
    }
    eprintln!(
        "example-app `{service}` listening on {}:{} at site {site}",
        args.address, args.port
    );
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let (site, service, last) = (site.clone(), service.clone(), last.clone());
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
                "/canary" => match &*last.lock().expect("not poisoned") {
                    Some((seq, at)) => ("200 OK", format!("{{\"seq\":{seq},\"at\":\"{at}\"}}\n")),
                    None => ("404 Not Found", "no canary\n".to_string()),
                },
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        });
    }
    Ok(crate::exit::code(crate::exit::OK))
}
