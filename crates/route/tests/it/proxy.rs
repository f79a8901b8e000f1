//! The TCP proxy: switching between two real backends on loopback, in-flight connections,
//! epochs, half-close, many connections and the connection limit.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use resurgo_route::{Proxy, Route, RouteError, Stale};

use crate::support::wait_for;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A backend that greets each connection with its tag (one byte, then `\n`), echoes what it
/// reads, and once the client half-closes writes `bye` and closes.
fn backend(tag: u8) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                conn.write_all(&[tag, b'\n'])?;
                let mut buf = [0u8; 1024];
                loop {
                    let n = conn.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    conn.write_all(&buf[..n])?;
                }
                conn.write_all(b"bye")?;
                std::io::Result::Ok(())
            });
        }
    });
    addr
}

fn connect(proxy: &Proxy) -> TcpStream {
    let conn = TcpStream::connect(proxy.local_addr()).unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    conn
}

/// Connects and reads the backend's greeting: which backend answered.
fn greeting(conn: &mut TcpStream) -> u8 {
    let mut tag = [0u8; 2];
    conn.read_exact(&mut tag).unwrap();
    tag[0]
}

/// Sends `payload`, half-closes, and returns everything the backend sends until it closes.
fn finish(mut conn: TcpStream, payload: &[u8]) -> Vec<u8> {
    conn.write_all(payload).unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).unwrap();
    out
}

fn start(backend: SocketAddr) -> Proxy {
    Proxy::start("127.0.0.1:0".parse().unwrap(), backend).unwrap()
}

#[test]
fn new_connections_go_to_the_new_backend_after_a_switch() {
    let (a, b) = (backend(b'A'), backend(b'B'));
    let proxy = start(a);
    assert_eq!(greeting(&mut connect(&proxy)), b'A');

    proxy.switch(b, 1).unwrap();
    assert_eq!(proxy.backend(), b);
    assert_eq!(proxy.epoch(), 1);
    assert_eq!(greeting(&mut connect(&proxy)), b'B');
}

#[test]
fn a_connection_in_flight_finishes_on_the_old_backend() {
    let (a, b) = (backend(b'A'), backend(b'B'));
    let proxy = start(a);
    let mut old = connect(&proxy);
    assert_eq!(greeting(&mut old), b'A');

    proxy.switch(b, 1).unwrap();
    let mut new = connect(&proxy);
    assert_eq!(greeting(&mut new), b'B');

    // The old connection still talks to A, both ways, and its half-close reaches A, whose
    // last words come back.
    assert_eq!(finish(old, b"still here"), b"still herebye");
    assert_eq!(finish(new, b"hi"), b"hibye");
}

#[test]
fn a_lower_epoch_is_refused_and_changes_nothing() {
    let (a, b) = (backend(b'A'), backend(b'B'));
    let proxy = start(a);
    proxy.switch(b, 5).unwrap();

    assert_eq!(proxy.switch(a, 4), Err(Stale { current: 5, offered: 4 }));
    // The same epoch naming another backend is a conflicting order, refused too...
    assert_eq!(proxy.switch(a, 5), Err(Stale { current: 5, offered: 5 }));
    // ...while repeating the order obeyed is fine.
    proxy.switch(b, 5).unwrap();
    assert_eq!((proxy.backend(), proxy.epoch()), (b, 5));
    assert_eq!(greeting(&mut connect(&proxy)), b'B');
}

#[test]
fn the_route_trait_switches_only_from_where_the_proxy_points() {
    let (a, b, c) = (backend(b'A'), backend(b'B'), backend(b'C'));
    let proxy = start(a);
    let route: &dyn Route = &proxy;

    let err = route.switch(Some(c), b, 1).unwrap_err();
    assert!(matches!(err, RouteError::Moved { found, .. } if found == a), "{err}");
    assert!(err.to_string().contains("someone else changed it"), "{err}");
    assert_eq!(route.current().unwrap(), Some(a));

    route.switch(Some(a), b, 1).unwrap();
    // Idempotent: the same switch again succeeds.
    route.switch(Some(a), b, 1).unwrap();
    assert!(matches!(route.switch(Some(b), a, 0), Err(RouteError::Stale(_))));
    assert_eq!(route.current().unwrap(), Some(b));
}

#[test]
fn many_concurrent_connections_are_all_forwarded() {
    const CLIENTS: usize = 48;
    let proxy = start(backend(b'A'));
    let addr = proxy.local_addr();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                conn.set_read_timeout(Some(TIMEOUT)).unwrap();
                assert_eq!(greeting(&mut conn), b'A');
                // All connections are open at once before any finishes.
                barrier.wait();
                let payload = format!("client {i} ").repeat(1000);
                let out = finish(conn, payload.as_bytes());
                assert_eq!(out, [payload.as_bytes(), b"bye"].concat());
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    wait_for("all connections to be released", TIMEOUT, || {
        (proxy.active_connections() == 0).then_some(())
    });
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let proxy = Proxy::start_bounded("127.0.0.1:0".parse().unwrap(), backend(b'A'), 2).unwrap();
    let mut first = connect(&proxy);
    let mut second = connect(&proxy);
    assert_eq!(greeting(&mut first), b'A');
    assert_eq!(greeting(&mut second), b'A');
    assert_eq!(proxy.active_connections(), 2);

    let mut third = connect(&proxy);
    let mut buf = [0u8; 2];
    // Closed without a greeting: EOF, or a reset.
    assert!(matches!(third.read(&mut buf), Ok(0) | Err(_)));

    assert_eq!(finish(first, b"x"), b"xbye");
    wait_for("a slot to be released", TIMEOUT, || {
        (proxy.active_connections() == 1).then_some(())
    });
    assert_eq!(greeting(&mut connect(&proxy)), b'A');
}

#[test]
fn stop_closes_the_listener_and_the_connections_in_flight() {
    let mut proxy = start(backend(b'A'));
    let addr = proxy.local_addr();
    let mut conn = connect(&proxy);
    assert_eq!(greeting(&mut conn), b'A');

    proxy.stop();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    assert!(TcpStream::connect(addr).is_err(), "the proxy still accepts after stop");
    proxy.stop(); // idempotent
}
