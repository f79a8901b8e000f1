//! What a site's agent does to its own site when asked (the site API's `plan` and `apply`):
//! plan the spec against this site alone, and apply that plan — nothing at another site.
//! Services that depend on a service at another site are started without waiting for it:
//! each site orders only its own.

use std::path::Path;

use resurgo_api::types::{Applied, AppliedChange};
use resurgo_plan::{make_plan, Plan, PlanOptions};

use crate::desired::Desired;
use crate::engine::{record_applied, Engine};
use crate::events::{Event, EventKind, EventLog};

/// The plan for `site` alone (`desired` with the assignments applied); a site never set up
/// from this state folder is planned as new (empty). Also says whether it is new.
pub fn plan_site(engine: &Engine, desired: &Desired, site: &str, options: PlanOptions) -> Result<(Plan, bool), String> {
    let system = &desired.loaded.system;
    let handle = engine
        .site(system, site)
        .ok_or_else(|| format!("`{site}` is not a site of the spec"))?;
    let mut wanted = resurgo_plan::desired_state(system);
    wanted.retain(|s, _| s == site);
    let (observed, new) = engine.observe_for_apply(std::slice::from_ref(&handle));
    let plan =
        make_plan(&system.name, desired.source.clone(), &wanted, &observed, options).map_err(|e| e.to_string())?;
    Ok((plan, !new.is_empty()))
}

/// Plans `site` and applies the plan there (setting the site up first when it is new),
/// recording the apply in the event log and the state folder.
pub fn apply_site(
    engine: &Engine,
    desired: &Desired,
    state_dir: &Path,
    site: &str,
    options: PlanOptions,
) -> Result<Applied, String> {
    let (plan, new) = plan_site(engine, desired, site, options)?;
    let system = &desired.loaded.system;
    let handle = engine
        .site(system, site)
        .ok_or_else(|| format!("`{site}` is not a site of the spec"))?;
    if new {
        engine
            .set_up(std::slice::from_ref(&handle), &[site.to_string()])
            .map_err(|e| format!("cannot set up site `{site}`: {e}"))?;
    }
    let label = desired.source.label();
    let events = EventLog::of_state(state_dir);
    let total = plan.summary.changes();
    if total > 0 {
        let _ = events.append(
            &Event::new(EventKind::ApplyStarted, format!("{total} changes"))
                .site(site)
                .commit(Some(&label)),
        );
    }
    let engine = engine
        .clone()
        .with_preparer(crate::protect::standby_preparer(engine, system));
    match engine.apply(&plan, &[handle], &|_| {}) {
        Ok(report) => {
            if total > 0 {
                let _ = events.append(
                    &Event::new(
                        EventKind::ApplyFinished,
                        format!("{} changes applied", report.done.len()),
                    )
                    .site(site)
                    .commit(Some(&label)),
                );
            }
            let _ = record_applied(state_dir, &plan.source);
            Ok(Applied {
                site: site.to_string(),
                desired: label,
                done: report
                    .done
                    .into_iter()
                    .map(|d| AppliedChange {
                        service: d.service,
                        action: d.action,
                        millis: d.millis,
                    })
                    .collect(),
            })
        }
        Err(e) => {
            let _ = events.append(
                &Event::new(EventKind::ApplyFailed, e.to_string())
                    .site(site)
                    .commit(Some(&label)),
            );
            Err(format!("apply at `{site}` stopped: {e}"))
        }
    }
}
