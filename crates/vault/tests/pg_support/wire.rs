//! A minimal PostgreSQL client (protocol 3, trust authentication, simple queries): enough for
//! a write load that knows exactly when each write was acknowledged, which spawning psql
//! per statement would blur.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Client {
    stream: TcpStream,
}

fn io_err(e: std::io::Error) -> String {
    format!("connection: {e}")
}

impl Client {
    pub fn connect(port: u16, user: &str, dbname: &str) -> Result<Client, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(io_err)?;
        stream.set_nodelay(true).map_err(io_err)?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(io_err)?;
        let mut client = Client { stream };
        let mut body = 196_608i32.to_be_bytes().to_vec();
        for s in ["user", user, "database", dbname, ""] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        client.stream.write_all(&msg).map_err(io_err)?;
        loop {
            let (kind, body) = client.read_message()?;
            match kind {
                b'R' if body[..4] == [0, 0, 0, 0] => {}
                b'R' => return Err("the server asks for a password; the test clusters use trust".into()),
                b'E' => return Err(error_text(&body)),
                b'Z' => return Ok(client),
                _ => {}
            }
        }
    }

    fn read_message(&mut self) -> Result<(u8, Vec<u8>), String> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head).map_err(io_err)?;
        let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        self.stream.read_exact(&mut body).map_err(io_err)?;
        Ok((head[0], body))
    }

    /// Runs one statement (autocommit); its rows, as text. Returns once the server said
    /// the statement is complete and it is ready again: for an INSERT, committed.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.stream.write_all(&msg).map_err(io_err)?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let (kind, body) = self.read_message()?;
            match kind {
                b'D' => rows.push(data_row(&body)),
                b'E' => error = Some(error_text(&body)),
                b'Z' => return error.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }
}

fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    (0..n)
        .map(|_| {
            let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
            at += 4;
            (len >= 0).then(|| {
                let v = String::from_utf8_lossy(&body[at..at + len as usize]).into_owned();
                at += len as usize;
                v
            })
        })
        .collect()
}

fn error_text(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .filter(|f| f.first() == Some(&b'M'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .next()
        .unwrap_or_else(|| "unknown server error".into())
}
