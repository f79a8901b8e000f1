//! Benchmark: resurgo vs restic vs borg on one generated 1 GiB mixed tree, in one run.
//! First backup, unchanged re-backup, 1%-changed re-backup, full restore: time, throughput,
//! repository size, peak memory, and resurgo's ratios to the others. Targets: first backup
//! ≥ restic's throughput and ≥ 2× borg's; unchanged re-backup ≤ restic's time; restore
//! ≥ 1.5× restic's throughput.
//!
//! `cargo bench -p resurgo --bench backup` (needs restic and borg: Debian packages `restic`,
//! `borgbackup`; GNU time at /usr/bin/time). RESURGO_BENCH_MB sets the tree size (default 1024).

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::Command;

const PASSWORD: &str = "bench-password-not-secret";

/// A small, fast, deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "recovery",
    "site",
    "backup",
    "the",
    "of",
    "and",
    "snapshot",
    "replica",
    "failover",
    "service",
    "data",
    "region",
    "primary",
    "standby",
    "objective",
    "point",
    "time",
    "restore",
    "journal",
    "epoch",
    "lease",
    "witness",
    "plan",
];

fn text(rng: &mut Rng, bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 16);
    while out.len() < bytes {
        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        out.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
        if rng.below(40) == 0 {
            let _ = write!(out, "{} ", rng.next());
        }
    }
    out.truncate(bytes);
    out
}

/// 35% text, 30% random, 15% gzip, 20% small files (1–16 KiB), by bytes.
fn generate(root: &Path, total: u64) {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let budget = |pct: u64| total * pct / 100;
    let mut n = 0u64;
    let file = |dir: &str, data: &[u8], n: &mut u64| {
        let d = root.join(dir).join(format!("{:03}", *n / 200));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{n}")), data).unwrap();
        *n += 1;
    };
    let mut left = budget(35);
    while left > 0 {
        let size = (64 * 1024 + rng.below(4 << 20)).min(left);
        file("text", &text(&mut rng, size as usize), &mut n);
        left -= size;
    }
    let mut left = budget(30);
    while left > 0 {
        let size = (256 * 1024 + rng.below(16 << 20)).min(left);
        let mut buf = vec![0u8; size as usize];
        rng.fill(&mut buf);
        file("random", &buf, &mut n);
        left -= size;
    }
    let mut left = budget(15);
    while left > 0 {
        let len = (1 << 20) + rng.below(8 << 20) as usize;
        let raw = text(&mut rng, len);
        let mut gz = Command::new("gzip")
            .arg("-1")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip");
        let mut stdin = gz.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || stdin.write_all(&raw));
        let out = gz.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        let size = (out.stdout.len() as u64).min(left);
        file("gzip", &out.stdout[..size as usize], &mut n);
        left -= size;
    }
    let mut left = budget(20);
    while left > 0 {
        let size = (1024 + rng.below(15 * 1024)).min(left);
        let data = if rng.below(2) == 0 {
            text(&mut rng, size as usize)
        } else {
            let mut b = vec![0u8; size as usize];
            rng.fill(&mut b);
            b
        };
        file("small", &data, &mut n);
        left -= size;
    }
}

/// Changes ~1% of the tree's bytes: rewrites a slice of some files, adds a few new ones.
fn change_one_percent(root: &Path, total: u64) {
    let mut rng = Rng(0xc4a9_6e00_0000_0001);
    let mut budget = total / 100;
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path())
            } else {
                files.push(e.path())
            }
        }
    }
    files.sort();
    while budget > 0 {
        let f = &files[rng.below(files.len() as u64) as usize];
        let mut data = std::fs::read(f).unwrap();
        let len = (data.len() as u64 / 10).clamp(1, budget.max(1)) as usize;
        let at = rng.below((data.len() - len.min(data.len())) as u64 + 1) as usize;
        let end = (at + len).min(data.len());
        rng.fill(&mut data[at..end]);
        std::fs::write(f, &data).unwrap();
        budget = budget.saturating_sub(len as u64);
    }
    std::fs::write(root.join("small/new-file"), text(&mut rng, 100_000)).unwrap();
}

struct Measure {
    secs: f64,
    peak_mb: f64,
}

/// Runs a command under GNU time; panics with its output if it fails.
fn measure(what: &str, cmd: &mut Command) -> Measure {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(out_file.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let out = wrapped
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run /usr/bin/time: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(out_file.path()).unwrap();
    let mut parts = text.split_whitespace();
    Measure {
        secs: parts.next().unwrap().parse().unwrap(),
        peak_mb: parts.next().unwrap().parse::<f64>().unwrap() / 1024.0,
    }
}

fn du(path: &Path) -> f64 {
    let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / (1 << 20) as f64
}

fn need(program: &str, package: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "`{program}` is missing: install the Debian package `{package}`");
}

struct Tool {
    steps: Vec<(&'static str, Measure)>,
    repo_mb: f64,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches` builds this; only `cargo bench` runs it.
    }
    need("restic", "restic");
    need("borg", "borgbackup");
    need("gzip", "gzip");
    let mb: u64 = std::env::var("RESURGO_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let total = mb << 20;
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    eprintln!("generating a {mb} MiB mixed tree…");
    generate(&tree, total);
    let files = Command::new("sh")
        .arg("-c")
        .arg(format!("find {} -type f | wc -l", tree.display()))
        .output()
        .unwrap();
    let files = String::from_utf8_lossy(&files.stdout).trim().to_string();
    let exe = env!("CARGO_BIN_EXE_resurgo");

    // resurgo: a spec with one directory dataset at site a.
    let rdir = work.path().join("resurgo");
    std::fs::create_dir_all(rdir.join("spec")).unwrap();
    std::fs::write(rdir.join("password"), PASSWORD).unwrap();
    std::fs::write(
        rdir.join("spec/resurgo.yaml"),
        format!(
            "apiVersion: resurgo.dev/v1alpha1\nsystem: bench\nsites:\n  a:\n    provider: local\n    address: 127.0.250.1\n    capacity: {{ cpu: 1, memory: 1Gi }}\n    repository: {{ url: {}, password: {{ file: {} }} }}\nservices:\n  holder:\n    command: /bin/true\n    site: a\ndatasets:\n  tree:\n    service: holder\n    type: directory\n    path: {}\n",
            rdir.join("repo").display(),
            rdir.join("password").display(),
            tree.display()
        ),
    )
    .unwrap();
    let resurgo = |args: &[&str]| {
        let mut c = Command::new(exe);
        c.args(args)
            .arg("--spec")
            .arg(rdir.join("spec"))
            .arg("--state")
            .arg(rdir.join("state"))
            .arg("--json");
        c
    };
    let restic_repo = work.path().join("restic");
    let restic = |args: &[&str]| {
        let mut c = Command::new("restic");
        c.args(["-q", "-r"])
            .arg(&restic_repo)
            .args(args)
            .env("RESTIC_PASSWORD", PASSWORD);
        c
    };
    let borg_repo = work.path().join("borg");
    let borg = |args: Vec<String>| {
        let mut c = Command::new("borg");
        c.args(args)
            .env("BORG_PASSPHRASE", PASSWORD)
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes");
        c
    };
    let b = borg_repo.display().to_string();
    let t = tree.display().to_string();

    measure("resurgo init", &mut resurgo(&["repo", "init"]));
    measure("restic init", &mut restic(&["init"]));
    measure(
        "borg init",
        &mut borg(vec!["init".into(), "-e".into(), "repokey".into(), b.clone()]),
    );

    let mut tools = vec![
        Tool {
            steps: vec![],
            repo_mb: 0.0,
        },
        Tool {
            steps: vec![],
            repo_mb: 0.0,
        },
        Tool {
            steps: vec![],
            repo_mb: 0.0,
        },
    ];
    for (step, changed) in [
        ("first backup", false),
        ("unchanged re-backup", false),
        ("1% changed re-backup", true),
    ] {
        if changed {
            change_one_percent(&tree, total);
        }
        eprintln!("{step}…");
        let n = tools[0].steps.len();
        tools[0]
            .steps
            .push((step, measure("resurgo backup", &mut resurgo(&["backup", "tree"]))));
        tools[1]
            .steps
            .push((step, measure("restic backup", &mut restic(&["backup", &t]))));
        tools[2].steps.push((
            step,
            measure(
                "borg create",
                &mut borg(vec![
                    "create".into(),
                    "--compression".into(),
                    "zstd,3".into(),
                    format!("{b}::s{n}"),
                    t.clone(),
                ]),
            ),
        ));
    }
    tools[0].repo_mb = du(&rdir.join("repo"));
    tools[1].repo_mb = du(&restic_repo);
    tools[2].repo_mb = du(&borg_repo);
    eprintln!("full restore…");
    let r_to = work.path().join("restore-resurgo");
    tools[0].steps.push((
        "full restore",
        measure(
            "resurgo restore",
            &mut resurgo(&["restore", "tree", "--site", "a", "--to", &r_to.display().to_string()]),
        ),
    ));
    let x_to = work.path().join("restore-restic");
    tools[1].steps.push((
        "full restore",
        measure(
            "restic restore",
            &mut restic(&["restore", "latest", "--target", &x_to.display().to_string()]),
        ),
    ));
    let g_to = work.path().join("restore-borg");
    std::fs::create_dir_all(&g_to).unwrap();
    tools[2].steps.push((
        "full restore",
        measure(
            "borg extract",
            borg(vec!["extract".into(), format!("{b}::s2")]).current_dir(&g_to),
        ),
    ));

    let mut report = String::new();
    let _ = writeln!(
        report,
        "\nbackup benchmark: {mb} MiB mixed tree, {files} files (35% text, 30% random, 15% gzip, 20% small)"
    );
    let _ = writeln!(
        report,
        "{:<22} {:>26} {:>26} {:>26}",
        "step", "resurgo", "restic", "borg"
    );
    for i in 0..tools[0].steps.len() {
        let step = tools[0].steps[i].0;
        let mut line = format!("{step:<22}");
        for tool in &tools {
            let m = &tool.steps[i].1;
            let _ = write!(
                line,
                " {:>7.2}s {:>7.0}MB/s {:>5.0}MB",
                m.secs,
                mb as f64 / m.secs.max(0.001),
                m.peak_mb
            );
        }
        let _ = writeln!(report, "{line}");
    }
    let _ = writeln!(
        report,
        "{:<22} {:>25.0}M {:>25.0}M {:>25.0}M",
        "repository size", tools[0].repo_mb, tools[1].repo_mb, tools[2].repo_mb
    );
    let _ = writeln!(
        report,
        "\nratios (resurgo throughput ÷ other's; > 1 means resurgo is faster):"
    );
    for i in 0..tools[0].steps.len() {
        let r = tools[0].steps[i].1.secs;
        let _ = writeln!(
            report,
            "  {:<22} vs restic {:.2}×   vs borg {:.2}×",
            tools[0].steps[i].0,
            tools[1].steps[i].1.secs / r.max(0.001),
            tools[2].steps[i].1.secs / r.max(0.001)
        );
    }
    let first = tools[1].steps[0].1.secs / tools[0].steps[0].1.secs;
    let first_borg = tools[2].steps[0].1.secs / tools[0].steps[0].1.secs;
    let unchanged = tools[1].steps[1].1.secs / tools[0].steps[1].1.secs;
    let restore = tools[1].steps[3].1.secs / tools[0].steps[3].1.secs;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let _ = writeln!(report, "\ntargets: first backup ≥ 1× restic: {} ({first:.2}×); ≥ 2× borg: {} ({first_borg:.2}×); unchanged ≤ restic's time: {} ({unchanged:.2}×); restore ≥ 1.5× restic: {} ({restore:.2}×)",
        verdict(first >= 1.0), verdict(first_borg >= 2.0), verdict(unchanged >= 1.0), verdict(restore >= 1.5));
    println!("{report}");
}
