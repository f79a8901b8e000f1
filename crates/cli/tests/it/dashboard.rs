//! The dashboard (issue 12, item 2) in a real browser: headless Chromium opens a's agent's
//! dashboard of a running two-site system (both agents serving the site API, a dataset backed
//! up at a and replicated to b on a real S3 server). Without signing in it is refused; signed
//! in, it shows both sites and the dataset; a service killed at a reaches the open page as a
//! live update (server-sent events, no reload); a failover to b started from the page, after a
//! confirmation that names its consequences, runs at b's agent and is seen to complete. The
//! signed-in session causes no console error; a screenshot of each step is saved under the
//! target folder (`dashboard/`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::api::{status_of, TOKEN};
use crate::browser::Browser;
use crate::util::{find_service, poll};

/// Where the screenshots go: kept after the test, beside the build.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Fills the sign-in form with `token` and sends it.
fn sign_in(browser: &mut Browser, token: &str) {
    browser.eval(&format!(
        "document.getElementById('token').value = {}; document.querySelector('form.login').submit(); true",
        json!(token)
    ));
}

#[test]
fn the_dashboard_in_chromium_is_refused_unsigned_shows_the_sites_live_and_fails_over_after_a_confirmation() {
    let (d, _s3) = crate::metrics::protected(195, 18195);
    let spec = d.env.spec_dir().join("resurgo.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text + "prices: { currency: EUR, storage_gib_month: 0.023, transfer_gib: 0.09, cpu_core_hour: 0.04, memory_gib_hour: 0.005 }\n",
    )
    .unwrap();
    let _a = d.agent("a");
    let _b = d.agent("b");
    d.apply();
    let init = d.operator(&["repo", "init"]);
    assert_eq!(init.code, 0, "repo init: {}{}", init.stdout, init.stderr);
    let shots = screenshots();

    // Without credentials every page, the event stream and the action are refused.
    let anonymous = d.client(&d.anonymous(), None);
    for path in [
        "/ui",
        "/ui/panel",
        "/ui/events",
        "/ui/confirm?action=failover&to=b",
        "/ui/runs/x",
    ] {
        let refused = anonymous.get_text(&d.addr(1), path).expect_err(path);
        assert_eq!(status_of(refused), 401, "{path}");
    }
    let act = anonymous.post::<_, serde_json::Value>(&d.addr(1), "/ui/act", &json!({"action": "failover", "to": "b"}));
    assert_eq!(status_of(act.unwrap_err()), 401, "/ui/act");
    // The session cookie opens only the dashboard's routes: a bearer-less JSON request is not
    // one of them (checked in the server's unit tests); here, the browser.

    let base = format!("https://{}", d.addr(1));
    let mut browser = Browser::start(Duration::from_secs(420));
    browser.goto(&format!("{base}/ui"));
    assert_eq!(
        browser.eval("document.querySelector('form.login') !== null && document.querySelector('[data-site]') === null"),
        true,
        "unsigned, the dashboard shows the sign-in form and no site"
    );
    browser.screenshot(&shots.join("1-refused.png"));
    // A wrong token is refused too.
    sign_in(&mut browser, "not-the-token");
    browser.wait_until(
        "a wrong token refused",
        "document.body && document.body.innerText.includes('Wrong token')",
        Duration::from_secs(10),
    );
    let refusals = browser.problems();
    assert!(
        refusals.iter().all(|p| p.contains("401") || p.contains("403")),
        "before signing in, only the refusals: {refusals:?}"
    );
    browser.forget();

    // Signed in: both sites and the dataset, whose newest point at b is within its objective
    // once replication has reached b; the event stream is connected.
    sign_in(&mut browser, TOKEN);
    browser.wait_until(
        "both sites shown",
        "document.querySelector('[data-site=\"a\"][data-state=\"reachable\"]') && document.querySelector('[data-site=\"b\"][data-state=\"reachable\"]')",
        Duration::from_secs(20),
    );
    browser.wait_until(
        "files' newest point at b within its RPO",
        "document.querySelector('[data-dataset=\"files\"] [data-point=\"b\"][data-rpo=\"within\"]')",
        Duration::from_secs(90),
    );
    browser.wait_until(
        "web healthy at a",
        "document.querySelector('[data-site=\"a\"] [data-service=\"web\"][data-health=\"healthy\"]')",
        Duration::from_secs(30),
    );
    browser.wait_until(
        "the event stream connected",
        "document.getElementById('live').textContent === 'live'",
        Duration::from_secs(20),
    );
    browser.screenshot(&shots.join("2-dashboard.png"));

    // web killed at a: the open page shows it restarted by a's agent (another pid) without
    // being reloaded.
    browser.eval(
        "window.resurgoKept = 42; document.querySelectorAll('#events li').forEach(li => li.dataset.old = '1'); true",
    );
    let status = d.operator(&["status", "--json"]).json();
    let pid = find_service(&status, "a", "web")
        .and_then(|s| s["pid"].as_u64())
        .expect("web's pid at a");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    browser.wait_until(
        "web shown restarted at a, without a reload",
        &format!("window.resurgoKept === 42 && document.querySelector('[data-site=\"a\"] [data-service=\"web\"][data-process=\"running\"]:not([data-pid=\"{pid}\"])')"),
        Duration::from_secs(30),
    );
    assert!(
        browser
            .eval("Number(document.body.getAttribute('data-updates') || 0)")
            .as_u64()
            > Some(0),
        "the panel was fetched again"
    );
    // What a's agent wrote meanwhile reached the page's event list through the stream (web's
    // drift when the reconcile saw it dead first, else its restart by the serving agent).
    browser.wait_until(
        "events arrived live",
        "window.resurgoKept === 42 && document.querySelectorAll('#events li:not([data-old])').length > 0",
        Duration::from_secs(30),
    );
    browser.screenshot(&shots.join("3-live-update.png"));

    // The maintenance switch from the page, on and off again, each after its confirmation.
    for (action, shown) in [("maintenance-on", true), ("maintenance-off", false)] {
        browser.eval(&format!(
            "document.querySelector('a.action[href$=\"action={action}\"]').click(); true"
        ));
        browser.wait_until(
            &format!("the confirmation of {action}"),
            "location.pathname === '/ui/confirm' && document.getElementById('do') !== null",
            Duration::from_secs(20),
        );
        browser.eval("document.getElementById('do').click(); true");
        browser.wait_until(
            &format!("the dashboard after {action}"),
            &format!(
                "location.pathname === '/ui' && (document.getElementById('maintenance') !== null) === {shown} && document.querySelector('[data-site=\"a\"]') !== null"
            ),
            Duration::from_secs(20),
        );
        let by = d.operator(&["status", "--json"]).json()["maintenance"]["by"].clone();
        assert_eq!(by.as_str().is_some_and(|b| b.contains("dashboard")), shown, "{by}");
    }

    // What the posture costs, from both agents' figures.
    browser.eval("document.querySelector('a.action[href=\"/ui/cost\"]').click(); true");
    let total = browser.wait_until(
        "the cost page",
        "location.pathname === '/ui/cost' && document.getElementById('total') && document.getElementById('total').innerText",
        Duration::from_secs(60),
    );
    assert!(total.as_str().is_some_and(|t| t.contains("EUR")), "{total}");
    assert_eq!(
        browser.eval("document.querySelector('[data-dataset=\"files\"]') !== null"),
        true,
        "the dataset and its alternative are priced"
    );
    browser.screenshot(&shots.join("4-cost.png"));
    browser.goto(&format!("{base}/ui"));

    // A failover to b from the page: first what it will do, then, confirmed, the run at b.
    browser.eval("document.querySelector('a.action[href*=\"action=failover\"][href*=\"to=b\"]').click(); true");
    browser.wait_until(
        "the confirmation page",
        "location.pathname === '/ui/confirm' && document.getElementById('do') !== null",
        Duration::from_secs(20),
    );
    let said = browser.eval("document.querySelector('ul.consequences').innerText");
    let said = said.as_str().unwrap_or_default();
    for consequence in ["web", "fenced", "files", "epoch goes from 0 to 1"] {
        assert!(
            said.contains(consequence),
            "the confirmation names `{consequence}`:\n{said}"
        );
    }
    browser.screenshot(&shots.join("5-confirm.png"));
    browser.eval("document.getElementById('do').click(); true");
    browser.wait_until(
        "the run's page",
        "location.pathname.startsWith('/ui/runs/')",
        Duration::from_secs(60),
    );
    browser.wait_until(
        "the failover succeeded",
        "document.querySelector('#outcome[data-outcome=\"succeeded\"]')",
        Duration::from_secs(120),
    );
    let rto = browser.eval("document.getElementById('rto').textContent");
    assert!(
        rto.as_str().is_some_and(|r| r.ends_with(" s")),
        "the run's RTO is shown: {rto}"
    );
    browser.screenshot(&shots.join("6-run.png"));

    // The dashboard now shows b as site-a's primary at epoch 1, as the operator's status does.
    browser.goto(&format!("{base}/ui"));
    browser.wait_until(
        "b primary for site-a",
        "document.querySelector('[data-group=\"site-a\"][data-primary=\"b\"]')",
        Duration::from_secs(30),
    );
    browser.screenshot(&shots.join("7-after-failover.png"));
    let status = poll(Duration::from_secs(20), || {
        let status = d.operator(&["status", "--json"]).json();
        let moved = status["roles"]
            .as_array()?
            .iter()
            .any(|r| r["group"] == "site-a" && r["primary"] == "b" && r["epoch"] == 1);
        moved.then_some(status)
    });
    assert!(
        status.is_some(),
        "the operator's status agrees that b is primary at epoch 1"
    );

    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "the signed-in session's console errors: {problems:#?}"
    );
    eprintln!("dashboard screenshots: {}", shots.display());
}
