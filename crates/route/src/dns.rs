//! DNS traffic switching: RFC 2136 DNS UPDATE signed with TSIG (HMAC-SHA256, RFC 8945), and a
//! plain A query to check what the authoritative server really serves.
//!
//! The wire format is written by hand (a few hundred lines) rather than pulling a DNS library:
//! resurgo needs exactly one UPDATE shape and one query.
//!
//! A switch is a compare-and-swap: the UPDATE carries a prerequisite that the A RRset is still
//! exactly the old site's address, so a flip only happens if nobody moved the record meanwhile
//! (ANCHORS.md, "Traffic switching"). Deleting the old record and adding the new one travel in
//! the same UPDATE, which the server applies atomically. A NOERROR answer is not trusted on its
//! own — some servers accept updates and drop them silently — so the switch ends by asking the
//! authoritative server and comparing.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};

use crate::EpochGate;

/// How long one exchange with the server may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after a NOERROR the authoritative server may take to serve the new record.
const VERIFY_DEADLINE: Duration = Duration::from_secs(3);
/// TSIG fudge: the clock skew allowed between us and the server (RFC 8945 §10 recommends 300).
const TSIG_FUDGE: u16 = 300;
const TSIG_ALGORITHM: &str = "hmac-sha256";

const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_TSIG: u16 = 250;
const CLASS_IN: u16 = 1;
const CLASS_NONE: u16 = 254;
const CLASS_ANY: u16 = 255;
const OPCODE_QUERY: u16 = 0;
const OPCODE_UPDATE: u16 = 5;
const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;

/// One A record switched by RFC 2136 UPDATE at one authoritative server.
///
/// `Debug` never shows the key secret.
pub struct DnsRoute {
    /// The authoritative (primary) server that accepts updates; usually port 53.
    pub server: SocketAddr,
    /// The zone the record lives in, e.g. `example.com`.
    pub zone: String,
    /// The record's absolute name, e.g. `www.example.com`; must be inside `zone`.
    pub name: String,
    /// The TTL given to the new record. Keep it low before any event (ANCHORS.md).
    pub ttl: u32,
    /// The TSIG key's name, as the server knows it.
    pub key_name: String,
    /// The TSIG key's secret (raw bytes, not base64).
    pub key_secret: Vec<u8>,
    /// The port clients use at every site: DNS carries only the address, so
    /// [`crate::Route::current`] reports it with this port.
    pub port: u16,
    pub(crate) gate: EpochGate,
}

impl fmt::Debug for DnsRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsRoute")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("key_name", &self.key_name)
            .field("key_secret", &"<redacted>")
            .field("port", &self.port)
            .finish()
    }
}

/// An answer code from the server (RCODE, or a TSIG error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rcode(pub u16);

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            6 => "YXDOMAIN",
            7 => "YXRRSET",
            8 => "NXRRSET",
            9 => "NOTAUTH",
            10 => "NOTZONE",
            16 => "BADSIG",
            17 => "BADKEY",
            18 => "BADTIME",
            22 => "BADTRUNC",
            n => return write!(f, "RCODE{n}"),
        };
        f.write_str(name)
    }
}

/// A DNS switch or query failed. Names the server, the zone (when known) and the record.
#[derive(Debug, thiserror::Error)]
#[error("dns record {record}{} on {server}: {kind}", zone_note(.zone))]
pub struct DnsError {
    pub server: SocketAddr,
    pub zone: Option<String>,
    pub record: String,
    pub kind: DnsErrorKind,
}

fn zone_note(zone: &Option<String>) -> String {
    zone.as_ref().map(|z| format!(" (zone {z})")).unwrap_or_default()
}

impl DnsError {
    /// Whether trying again later can help (network trouble, a failing or lagging server), as
    /// opposed to a refusal or a conflict that needs a person.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            DnsErrorKind::Io { .. } | DnsErrorKind::ServerFailure { .. } | DnsErrorKind::NotApplied { .. }
        )
    }
}

/// What went wrong, without where (see [`DnsError`]).
#[derive(Debug, thiserror::Error)]
pub enum DnsErrorKind {
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the server refused the update ({rcode}{}): check the TSIG key and the zone's update policy", tsig_note(*.tsig_error))]
    Refused { rcode: Rcode, tsig_error: Option<Rcode> },
    #[error("the record no longer points at the old site ({rcode}, expected {}); someone else changed it", show_old(*.expected))]
    Moved { rcode: Rcode, expected: Option<Ipv4Addr> },
    #[error("the server is not authoritative for the zone, or the record is outside it ({rcode})")]
    NotZone { rcode: Rcode },
    #[error("the server failed ({rcode}); trying again may help")]
    ServerFailure { rcode: Rcode },
    #[error("the server answered {rcode}")]
    Unexpected { rcode: Rcode },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("the response is not signed with our key: {0}")]
    BadSignature(String),
    #[error("the server accepted the update but still serves {found:?}, not {expected}: it may drop updates silently (are updates enabled?)")]
    NotApplied { expected: Ipv4Addr, found: Vec<Ipv4Addr> },
    #[error("invalid name: {0}")]
    InvalidName(String),
}

fn tsig_note(e: Option<Rcode>) -> String {
    e.map(|e| format!(", TSIG {e}")).unwrap_or_default()
}

fn show_old(old: Option<Ipv4Addr>) -> String {
    old.map_or_else(|| "no A record".to_owned(), |ip| ip.to_string())
}

impl DnsRoute {
    /// A route for `name` in `zone` at `server`, signed with the key `key_name`/`key_secret`;
    /// TTL 60 s and port 0 until set.
    pub fn new(
        server: SocketAddr,
        zone: impl Into<String>,
        name: impl Into<String>,
        key_name: impl Into<String>,
        key_secret: impl Into<Vec<u8>>,
    ) -> DnsRoute {
        DnsRoute {
            server,
            zone: zone.into(),
            name: name.into(),
            ttl: 60,
            key_name: key_name.into(),
            key_secret: key_secret.into(),
            port: 0,
            gate: EpochGate::default(),
        }
    }

    fn error(&self, kind: DnsErrorKind) -> DnsError {
        DnsError {
            server: self.server,
            zone: Some(self.zone.clone()),
            record: self.name.clone(),
            kind,
        }
    }

    /// Points the A record at `new`, only if it is exactly `old` now, then checks that the
    /// authoritative server serves `new`.
    ///
    /// `old: None` means "there is no A record yet": the prerequisite is then "RRset does not
    /// exist" for type A (RFC 2136 §2.4.3), not "name is not in use" (§2.4.5) — the name may
    /// rightly hold other records (TXT, AAAA) that are not ours to police — and never no
    /// prerequisite at all, which would let two first switches both succeed and leave two
    /// addresses. `old: Some(a)` is "RRset exists (value dependent)" (§2.4.2): the whole A RRset
    /// must be exactly `{a}`.
    pub fn switch_a_record(&self, old: Option<Ipv4Addr>, new: Ipv4Addr) -> Result<(), DnsError> {
        let zone = Name::parse(&self.zone).map_err(|e| self.error(DnsErrorKind::InvalidName(e)))?;
        let name = Name::parse(&self.name).map_err(|e| self.error(DnsErrorKind::InvalidName(e)))?;
        let key_name = Name::parse(&self.key_name).map_err(|e| self.error(DnsErrorKind::InvalidName(e)))?;
        if !name.is_within(&zone) {
            return Err(self.error(DnsErrorKind::InvalidName(format!(
                "{} is not inside zone {}",
                self.name, self.zone
            ))));
        }

        let id = random_id();
        let mut msg = Vec::with_capacity(256);
        put_header(
            &mut msg,
            id,
            OPCODE_UPDATE << 11,
            [1, 1, if old.is_some_and(|o| o != new) { 2 } else { 1 }, 0],
        );
        // Zone section.
        zone.write(&mut msg);
        put_u16(&mut msg, TYPE_SOA);
        put_u16(&mut msg, CLASS_IN);
        // Prerequisite section.
        match old {
            Some(old) => put_rr(&mut msg, &name, TYPE_A, CLASS_IN, 0, &old.octets()),
            None => put_rr(&mut msg, &name, TYPE_A, CLASS_NONE, 0, &[]),
        }
        // Update section: delete the old RR, add the new one. When old == new only the add is
        // sent (a no-op for the server) so the call is idempotent.
        if let Some(old) = old.filter(|&o| o != new) {
            put_rr(&mut msg, &name, TYPE_A, CLASS_NONE, 0, &old.octets());
        }
        put_rr(&mut msg, &name, TYPE_A, CLASS_IN, self.ttl, &new.octets());

        let key = TsigKey {
            name: key_name,
            secret: &self.key_secret,
        };
        let request_mac = key.sign(&mut msg, id, unix_now());
        let response =
            exchange_tcp(self.server, &msg).map_err(|(op, source)| self.error(DnsErrorKind::Io { op, source }))?;
        let parsed = Response::parse(&response).map_err(|e| self.error(DnsErrorKind::Malformed(e)))?;
        if parsed.id != id || parsed.flags & FLAG_QR == 0 || (parsed.flags >> 11) & 0xf != OPCODE_UPDATE {
            return Err(self.error(DnsErrorKind::Malformed("the answer does not match the update".into())));
        }
        let tsig = parsed.tsig.as_ref();
        let tsig_error = tsig.map(|t| t.error).filter(|&e| e != 0).map(Rcode);
        let rcode = Rcode(parsed.flags & 0xf);
        if tsig_error.is_some() || rcode.0 == 5 || rcode.0 == 9 {
            // RFC 8945 §5.3.2: answers to BADKEY/BADSIG are unsigned; nothing to verify.
            return Err(self.error(DnsErrorKind::Refused { rcode, tsig_error }));
        }
        match tsig {
            Some(t) => key
                .verify(&response, &parsed, t, &request_mac, unix_now())
                .map_err(|e| self.error(DnsErrorKind::BadSignature(e)))?,
            None => return Err(self.error(DnsErrorKind::BadSignature("the answer carries no TSIG".into()))),
        }
        match rcode.0 {
            0 => {}
            7 | 8 => return Err(self.error(DnsErrorKind::Moved { rcode, expected: old })),
            10 => return Err(self.error(DnsErrorKind::NotZone { rcode })),
            2 => return Err(self.error(DnsErrorKind::ServerFailure { rcode })),
            _ => return Err(self.error(DnsErrorKind::Unexpected { rcode })),
        }

        // Verify: the server said yes; check that it serves it.
        let deadline = Instant::now() + VERIFY_DEADLINE;
        loop {
            let found = query_a(self.server, &self.name).map_err(|e| self.error(e.kind))?;
            if found == [new] {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.error(DnsErrorKind::NotApplied { expected: new, found }));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The A record's addresses as the authoritative server serves them now.
    pub fn current_a(&self) -> Result<Vec<Ipv4Addr>, DnsError> {
        query_a(self.server, &self.name).map_err(|e| self.error(e.kind))
    }
}

/// Asks `server` for the A records of `name` (no recursion: meant for the authoritative
/// server): over UDP, again over TCP when the answer is truncated. An empty list when the name
/// or the RRset does not exist.
pub fn query_a(server: SocketAddr, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
    let err = |kind| DnsError {
        server,
        zone: None,
        record: name.to_owned(),
        kind,
    };
    let qname = Name::parse(name).map_err(|e| err(DnsErrorKind::InvalidName(e)))?;
    let id = random_id();
    let mut msg = Vec::with_capacity(64);
    put_header(&mut msg, id, OPCODE_QUERY << 11, [1, 0, 0, 0]);
    qname.write(&mut msg);
    put_u16(&mut msg, TYPE_A);
    put_u16(&mut msg, CLASS_IN);

    let mut response = exchange_udp(server, &msg, id).map_err(|(op, source)| err(DnsErrorKind::Io { op, source }))?;
    let mut parsed = Response::parse(&response).map_err(|e| err(DnsErrorKind::Malformed(e)))?;
    if parsed.flags & FLAG_TC != 0 {
        response = exchange_tcp(server, &msg).map_err(|(op, source)| err(DnsErrorKind::Io { op, source }))?;
        parsed = Response::parse(&response).map_err(|e| err(DnsErrorKind::Malformed(e)))?;
    }
    if parsed.id != id || parsed.flags & FLAG_QR == 0 {
        return Err(err(DnsErrorKind::Malformed(
            "the answer does not match the query".into(),
        )));
    }
    match Rcode(parsed.flags & 0xf) {
        Rcode(0) => {}
        Rcode(3) => return Ok(Vec::new()),
        rcode @ Rcode(2) => return Err(err(DnsErrorKind::ServerFailure { rcode })),
        rcode @ (Rcode(5) | Rcode(9)) => return Err(err(DnsErrorKind::NotZone { rcode })),
        rcode => return Err(err(DnsErrorKind::Unexpected { rcode })),
    }
    let mut out = Vec::new();
    for rr in parsed.records.iter().filter(|rr| rr.section == Section::Answer) {
        if rr.rtype == TYPE_A && rr.class == CLASS_IN && rr.name == qname && rr.rdata.len() == 4 {
            let rd = &response[rr.rdata.clone()];
            out.push(Ipv4Addr::new(rd[0], rd[1], rd[2], rd[3]));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

// ---- names ----

/// A domain name as lowercase labels (DNS compares names case-insensitively; TSIG's digest
/// uses the canonical, lowercase form).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name(Vec<Vec<u8>>);

impl Name {
    fn parse(text: &str) -> Result<Name, String> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Ok(Name(Vec::new()));
        }
        let mut labels = Vec::new();
        let mut wire_len = 1;
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("{text:?}: every label must be 1 to 63 bytes"));
            }
            wire_len += 1 + label.len();
            labels.push(label.to_ascii_lowercase().into_bytes());
        }
        if wire_len > 255 {
            return Err(format!("{text:?}: longer than 255 bytes"));
        }
        Ok(Name(labels))
    }

    fn is_within(&self, zone: &Name) -> bool {
        self.0.len() >= zone.0.len() && self.0[self.0.len() - zone.0.len()..] == zone.0[..]
    }

    /// Uncompressed wire form.
    fn write(&self, buf: &mut Vec<u8>) {
        for label in &self.0 {
            buf.push(label.len() as u8);
            buf.extend_from_slice(label);
        }
        buf.push(0);
    }
}

// ---- writing ----

fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_u48(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes()[2..]);
}

fn put_header(buf: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    put_u16(buf, id);
    put_u16(buf, flags);
    for c in counts {
        put_u16(buf, c);
    }
}

fn put_rr(buf: &mut Vec<u8>, name: &Name, rtype: u16, class: u16, ttl: u32, rdata: &[u8]) {
    name.write(buf);
    put_u16(buf, rtype);
    put_u16(buf, class);
    put_u32(buf, ttl);
    put_u16(buf, rdata.len() as u16);
    buf.extend_from_slice(rdata);
}

// ---- TSIG (RFC 8945) ----

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

struct TsigKey<'a> {
    name: Name,
    secret: &'a [u8],
}

impl TsigKey<'_> {
    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(self.secret).expect("HMAC takes keys of any length")
    }

    /// The TSIG variables (RFC 8945 §4.3.3) for a digest.
    fn variables(&self, time: u64, fudge: u16, error: u16, other: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.name.write(&mut v);
        put_u16(&mut v, CLASS_ANY);
        put_u32(&mut v, 0);
        algorithm().write(&mut v);
        put_u48(&mut v, time);
        put_u16(&mut v, fudge);
        put_u16(&mut v, error);
        put_u16(&mut v, other.len() as u16);
        v.extend_from_slice(other);
        v
    }

    /// Appends a TSIG record to `msg` (whose ARCOUNT does not count it yet) and returns the MAC,
    /// which the response's MAC covers.
    fn sign(&self, msg: &mut Vec<u8>, id: u16, now: u64) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(msg);
        mac.update(&self.variables(now, TSIG_FUDGE, 0, &[]));
        let digest = mac.finalize().into_bytes().to_vec();

        let mut rdata = Vec::with_capacity(64);
        algorithm().write(&mut rdata);
        put_u48(&mut rdata, now);
        put_u16(&mut rdata, TSIG_FUDGE);
        put_u16(&mut rdata, digest.len() as u16);
        rdata.extend_from_slice(&digest);
        put_u16(&mut rdata, id);
        put_u16(&mut rdata, 0); // error
        put_u16(&mut rdata, 0); // other len
        put_rr(msg, &self.name, TYPE_TSIG, CLASS_ANY, 0, &rdata);
        let arcount = u16::from_be_bytes([msg[10], msg[11]]) + 1;
        msg[10..12].copy_from_slice(&arcount.to_be_bytes());
        digest
    }

    /// Checks a response's TSIG (RFC 8945 §5.3): the right key and algorithm, a MAC over the
    /// request's MAC + the response without its TSIG + the variables, and a time within fudge.
    fn verify(&self, raw: &[u8], resp: &Response, tsig: &Tsig, request_mac: &[u8], now: u64) -> Result<(), String> {
        if tsig.key_name != self.name {
            return Err("signed with another key".into());
        }
        if tsig.algorithm != algorithm() {
            return Err("signed with another algorithm".into());
        }
        let mut unsigned = raw[..tsig.record_start].to_vec();
        unsigned[0..2].copy_from_slice(&tsig.original_id.to_be_bytes());
        unsigned[10..12].copy_from_slice(&(resp.arcount - 1).to_be_bytes());
        let mut mac = self.mac();
        mac.update(&(request_mac.len() as u16).to_be_bytes());
        mac.update(request_mac);
        mac.update(&unsigned);
        mac.update(&self.variables(tsig.time, tsig.fudge, tsig.error, &raw[tsig.other.clone()]));
        mac.verify_slice(&raw[tsig.mac.clone()])
            .map_err(|_| "the MAC does not verify".to_owned())?;
        if now.abs_diff(tsig.time) > u64::from(tsig.fudge) {
            return Err(format!("signed at {} but now is {now}: check the clocks", tsig.time));
        }
        Ok(())
    }
}

fn algorithm() -> Name {
    Name::parse(TSIG_ALGORITHM).expect("a valid name")
}

// ---- reading ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Answer,
    Authority,
    Additional,
}

struct Record {
    section: Section,
    name: Name,
    rtype: u16,
    class: u16,
    rdata: std::ops::Range<usize>,
}

struct Tsig {
    record_start: usize,
    key_name: Name,
    algorithm: Name,
    time: u64,
    fudge: u16,
    mac: std::ops::Range<usize>,
    original_id: u16,
    error: u16,
    other: std::ops::Range<usize>,
}

struct Response {
    id: u16,
    flags: u16,
    arcount: u16,
    records: Vec<Record>,
    /// The TSIG record, when it is the last record of the additional section (RFC 8945 §5.1).
    tsig: Option<Tsig>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>, String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated message")?;
        let r = self.pos..end;
        self.pos = end;
        Ok(r)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let r = self.take(2)?;
        Ok(u16::from_be_bytes([self.buf[r.start], self.buf[r.start + 1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok((u32::from(self.u16()?) << 16) | u32::from(self.u16()?))
    }

    fn u48(&mut self) -> Result<u64, String> {
        Ok((u64::from(self.u16()?) << 32) | u64::from(self.u32()?))
    }

    /// A name, following compression pointers (bounded, so a pointer loop cannot hang us).
    fn name(&mut self) -> Result<Name, String> {
        let mut labels = Vec::new();
        let mut pos = self.pos;
        let mut jumped = false;
        for _ in 0..128 {
            let len = *self.buf.get(pos).ok_or("truncated name")? as usize;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    if !jumped {
                        self.pos = pos + 1;
                    }
                    return Ok(Name(labels));
                }
                0x00 => {
                    let label = self.buf.get(pos + 1..pos + 1 + len).ok_or("truncated label")?;
                    labels.push(label.to_ascii_lowercase());
                    pos += 1 + len;
                }
                0xc0 => {
                    let low = *self.buf.get(pos + 1).ok_or("truncated pointer")? as usize;
                    if !jumped {
                        self.pos = pos + 2;
                    }
                    jumped = true;
                    pos = ((len & 0x3f) << 8) | low;
                }
                _ => return Err("unknown label type".into()),
            }
        }
        Err("name compression loop".into())
    }
}

impl Response {
    fn parse(buf: &[u8]) -> Result<Response, String> {
        let mut r = Reader { buf, pos: 0 };
        let id = r.u16()?;
        let flags = r.u16()?;
        let qdcount = r.u16()?;
        let ancount = r.u16()?;
        let nscount = r.u16()?;
        let arcount = r.u16()?;
        for _ in 0..qdcount {
            r.name()?;
            r.take(4)?;
        }
        let mut records = Vec::new();
        let mut tsig = None;
        let sections = [
            (Section::Answer, ancount),
            (Section::Authority, nscount),
            (Section::Additional, arcount),
        ];
        for (section, count) in sections {
            for i in 0..count {
                let start = r.pos;
                let name = r.name()?;
                let rtype = r.u16()?;
                let class = r.u16()?;
                let _ttl = r.u32()?;
                let len = r.u16()? as usize;
                let rdata = r.take(len)?;
                if rtype == TYPE_TSIG {
                    if section != Section::Additional || i + 1 != count {
                        return Err("a TSIG record that is not the last one".into());
                    }
                    tsig = Some(Tsig::parse(buf, start, name.clone(), rdata.clone())?);
                }
                records.push(Record {
                    section,
                    name,
                    rtype,
                    class,
                    rdata,
                });
            }
        }
        Ok(Response {
            id,
            flags,
            arcount,
            records,
            tsig,
        })
    }
}

impl Tsig {
    fn parse(buf: &[u8], record_start: usize, key_name: Name, rdata: std::ops::Range<usize>) -> Result<Tsig, String> {
        let mut r = Reader {
            buf: &buf[..rdata.end],
            pos: rdata.start,
        };
        let algorithm = r.name()?;
        let time = r.u48()?;
        let fudge = r.u16()?;
        let mac_len = r.u16()? as usize;
        let mac = r.take(mac_len)?;
        let original_id = r.u16()?;
        let error = r.u16()?;
        let other_len = r.u16()? as usize;
        let other = r.take(other_len)?;
        Ok(Tsig {
            record_start,
            key_name,
            algorithm,
            time,
            fudge,
            mac,
            original_id,
            error,
            other,
        })
    }
}

// ---- transport ----

type IoFailure = (&'static str, io::Error);

/// One message over TCP (RFC 1035 §4.2.2: a two-byte length before each message). Updates
/// always go over TCP: no truncation, no retransmission guesswork.
fn exchange_tcp(server: SocketAddr, msg: &[u8]) -> Result<Vec<u8>, IoFailure> {
    let mut stream = TcpStream::connect_timeout(&server, EXCHANGE_TIMEOUT).map_err(|e| ("connect over tcp", e))?;
    stream
        .set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(|e| ("set a timeout", e))?;
    stream
        .set_write_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(|e| ("set a timeout", e))?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    put_u16(&mut framed, msg.len() as u16);
    framed.extend_from_slice(msg);
    stream.write_all(&framed).map_err(|e| ("send over tcp", e))?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .map_err(|e| ("read the answer over tcp", e))?;
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    stream
        .read_exact(&mut answer)
        .map_err(|e| ("read the answer over tcp", e))?;
    Ok(answer)
}

/// One query over UDP, from a connected socket (so only `server` can answer), ignoring
/// datagrams that carry another id.
fn exchange_udp(server: SocketAddr, msg: &[u8], id: u16) -> Result<Vec<u8>, IoFailure> {
    let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("a valid address");
    let socket = UdpSocket::bind(local).map_err(|e| ("bind a udp socket", e))?;
    socket.connect(server).map_err(|e| ("connect over udp", e))?;
    socket.send(msg).map_err(|e| ("send over udp", e))?;
    let deadline = Instant::now() + EXCHANGE_TIMEOUT;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(("wait for the answer over udp", io::ErrorKind::TimedOut.into()));
        }
        socket.set_read_timeout(Some(left)).map_err(|e| ("set a timeout", e))?;
        let n = socket.recv(&mut buf).map_err(|e| ("wait for the answer over udp", e))?;
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

fn random_id() -> u16 {
    // Not cryptographic, and need not be: TSIG authenticates the exchange. `RandomState` is
    // seeded randomly per process and differs per call, so ids are unpredictable enough.
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u16
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_checked() {
        assert_eq!(
            Name::parse("WWW.Example.test.").unwrap(),
            Name::parse("www.example.test").unwrap()
        );
        assert!(Name::parse("a..b").is_err());
        assert!(Name::parse(&"x".repeat(64)).is_err());
        let zone = Name::parse("example.test").unwrap();
        assert!(Name::parse("www.example.test").unwrap().is_within(&zone));
        assert!(!Name::parse("www.example.org").unwrap().is_within(&zone));
    }

    /// A signed message parses back, and its TSIG is found where the digest expects it.
    #[test]
    fn signed_message_round_trips() {
        let key = TsigKey {
            name: Name::parse("k.").unwrap(),
            secret: b"secret",
        };
        let mut msg = Vec::new();
        put_header(&mut msg, 7, 0, [0, 0, 0, 0]);
        let mac = key.sign(&mut msg, 7, 1_000);
        let parsed = Response::parse(&msg).unwrap();
        let tsig = parsed.tsig.as_ref().unwrap();
        assert_eq!(parsed.arcount, 1);
        assert_eq!(&msg[tsig.mac.clone()], &mac[..]);
        assert_eq!((tsig.time, tsig.fudge, tsig.original_id), (1_000, TSIG_FUDGE, 7));
        assert_eq!(tsig.algorithm, algorithm());
    }
}
