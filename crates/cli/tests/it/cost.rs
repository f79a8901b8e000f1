//! `resurgo cost` (issue 12, item 4): on a real two-site system whose controller backed up a
//! dataset and replicated it, the figures add up — each site's storage is its repository's
//! bytes × its price, the transfer is the bytes replicated × the price, the total is the
//! lines' sum —, the JSON matches its schema, what has no price is named, and a malformed
//! price file is refused at its line and field.

use std::time::Duration;

use serde_json::Value;

use crate::output::matches_schema;
use crate::util::Env;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

#[test]
fn cost_of_a_real_backup_and_replication_adds_up_and_a_bad_price_file_is_refused() {
    let mut env = Env::new(170);
    let files = env.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    for i in 0..4 {
        std::fs::write(files.join(format!("f{i}")), format!("row {i}\n").repeat(20_000)).unwrap();
    }
    let web = Env::web("web", "a", 7290, "manual", &[]).replace(
        "    site: a\n",
        "    site: a\n    standby: [b]\n    resources: { cpu: 2, memory: 1Gi }\n",
    );
    env.write_spec(
        &(env.with_repositories(&env.spec(&web))
            + &format!(
                "datasets:\n  files:\n    service: web\n    type: directory\n    path: {}\n    schedule: 1s\n    rpo: 1m\n",
                files.display()
            )),
    );
    assert_eq!(env.run(&["repo", "init"]).code, 0);
    env.start_controller(&[]);
    env.wait_event("replication_finished", Duration::from_secs(30), |e| {
        e["kind"] == "replication_finished" && e["dataset"] == "files" && e["site"] == "b"
    });
    env.stop_controller();
    let replicated = env
        .events()
        .into_iter()
        .find(|e| e["kind"] == "replication_finished")
        .unwrap();
    assert!(
        replicated["message"].as_str().unwrap().ends_with(" bytes)"),
        "the event records the bytes copied: {replicated}"
    );

    let prices = env.path().join("prices.yaml");
    std::fs::write(
        &prices,
        "currency: EUR\ncpu_core_hour: 0.04\nmemory_gib_hour: 0.01\nstorage_gib_month: 0.5\ntransfer_gib: 0.2\nsites:\n  b:\n    storage_gib_month: 0.25\n",
    )
    .unwrap();
    let out = env.run(&["cost", "--prices", prices.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report = matches_schema("cost", &out.stdout);
    assert_eq!(report["currency"], "EUR");
    let lines = report["lines"].as_array().unwrap();

    // Each site's storage lines are its repository's bytes at its price.
    for (site, price) in [("a", 0.5), ("b", 0.25)] {
        let repo = report["measured"]["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["site"] == site)
            .unwrap_or_else(|| panic!("{site}'s repository was not measured: {report:#}"));
        let bytes = f(&repo["bytes"]);
        assert!(bytes > 0.0, "{repo}");
        let storage: f64 = lines
            .iter()
            .filter(|l| l["site"] == site && l["item"] == "storage")
            .map(|l| f(&l["cost"]))
            .sum();
        assert!(
            close(storage, bytes / GIB * price),
            "{site}: storage {storage} is not {bytes} bytes × {price}: {lines:#?}"
        );
    }
    // The transfer is the bytes replicated, per month, at the sending site's price.
    let r = &report["measured"]["replications"][0];
    assert_eq!(
        (&r["from"], &r["to"], &r["dataset"]),
        (&"a".into(), &"b".into(), &"files".into())
    );
    assert!(f(&r["bytes"]) > 0.0, "{r}");
    let transfer = lines
        .iter()
        .find(|l| l["item"] == "transfer" && l["dataset"] == "files")
        .unwrap();
    assert_eq!(transfer["site"], "a");
    let monthly = f(&r["bytes"]) * (730.0 / 24.0) / f(&r["days"]).max(1.0) / GIB;
    assert!(close(f(&transfer["quantity"]), monthly), "{transfer} vs {r}");
    assert!(close(f(&transfer["cost"]), monthly * 0.2), "{transfer}");
    // The parts, the sites and the total agree with the lines.
    let sum: f64 = lines.iter().filter_map(|l| l["cost"].as_f64()).sum();
    assert!(close(f(&report["total"]["cost"]), sum), "{report:#}");
    for list in ["sites", "strategies"] {
        let by: f64 = report[list].as_array().unwrap().iter().map(|s| f(&s["cost"])).sum();
        assert!(close(by, sum), "{list}: {by} vs {sum}");
    }
    assert_eq!(report["total"]["complete"], true, "{report:#}");
    // A directory dataset: backup, with its RPO from its schedule; no standby to compare with.
    let ds = &report["datasets"][0];
    assert_eq!(
        (&ds["dataset"], &ds["current"]["strategy"]),
        (&"files".into(), &"backup".into())
    );
    assert_eq!(ds["current"]["rpo_s"], 1.0);
    assert!(ds["alternative"].is_null());
    assert_eq!(ds["unavailable"], "only a PostgreSQL dataset keeps a warm standby");

    // For people: a table, the sums, each dataset.
    let table = env.run(&["cost", "--prices", prices.to_str().unwrap()]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    for want in [
        "SITE  PART",
        "per site: a ",
        "total:    ",
        " EUR/month",
        "files (web)",
        "now  backup",
    ] {
        assert!(table.stdout.contains(want), "no `{want}` in:\n{}", table.stdout);
    }

    // Without prices, nothing is free: everything measured is unpriced.
    let bare = env.run(&["cost", "--json"]);
    assert_eq!(bare.code, 0, "{}", bare.stderr);
    let bare = matches_schema("cost", &bare.stdout);
    assert!(bare["currency"].is_null());
    assert_eq!(bare["total"]["complete"], false);
    let unpriced: Vec<&str> = bare["unpriced"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in ["storage_gib_month at a", "storage_gib_month at b", "transfer_gib at a"] {
        assert!(unpriced.contains(&want), "{unpriced:?}");
    }

    // A malformed price file: exit 1, the file, line and field named.
    std::fs::write(&prices, "currency: EUR\nstorage_gib_month: lots\n").unwrap();
    let bad = env.run(&["cost", "--prices", prices.to_str().unwrap()]);
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stderr.contains("prices.yaml:2:") && bad.stderr.contains("storage_gib_month:"),
        "{}",
        bad.stderr
    );
    let missing = env.run(&["cost", "--prices", "no-such-prices.yaml"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("cannot read the price file no-such-prices.yaml"),
        "{}",
        missing.stderr
    );
}
