//! Scenario restart-on-failure: `pkill -9 httpd` inside the guest serving the
//! VIP; systemd restarts the container (`Restart=on-failure` in the lab
//! user's container-httpd.service); measures the time until the page
//! answers again.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Demo, Page};

/// The lab user's container unit.
const UNIT: &str = "container-httpd.service";

pub fn steps(demo: &mut Demo) -> anyhow::Result<()> {
    demo.step("the VIP answers", "the app's page", |demo| {
        let page = demo.page()?;
        Ok(format!("{page:?} page"))
    })?;
    let serving = demo.serving_guest()?;
    let restarts_before =
        demo.step(&format!("{UNIT} runs on {serving}"), "active, with its restart count", |demo| {
            unit_restarts(demo, &serving)
        })?;
    let before: u64 = restarts_before.parse().context("NRestarts")?;

    let killed = Instant::now();
    demo.step(&format!("pkill -9 httpd on {serving}"), "the app's process killed", |demo| {
        let out = demo.guest_ok(&serving, "pkill -9 -x httpd && echo killed", Duration::from_secs(30))?;
        Ok(out)
    })?;
    demo.step("the page answers again", "the app's page after systemd restarted the container", |demo| {
        let page = super::wait_for(Duration::from_secs(300), Duration::from_millis(500), || {
            Ok(Some(Page::of(&demo.get_vip(super::APP_PORT, Duration::from_secs(30))?)?))
        })?;
        Ok(format!("{page:?} page {:.1}s after the kill", killed.elapsed().as_secs_f64()))
    })?;
    demo.measure("restart_s", killed.elapsed().as_secs_f64());
    demo.step("systemd restarted the unit", &format!("{UNIT} NRestarts above {before}"), |demo| {
        let now: u64 = unit_restarts(demo, &serving)?.parse().context("NRestarts")?;
        match now > before {
            true => Ok(format!("NRestarts {before} -> {now}")),
            false => bail!("NRestarts is still {now}"),
        }
    })?;
    Ok(())
}

/// The unit's `NRestarts`, failing unless it is active.
fn unit_restarts(demo: &Demo, guest: &str) -> anyhow::Result<String> {
    let out = demo.user_sh(
        guest,
        &format!(
            "systemctl --user show -p ActiveState --value {UNIT}; systemctl --user show -p NRestarts --value {UNIT}"
        ),
        Duration::from_secs(60),
    )?;
    let lines: Vec<&str> = out.text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    match lines.as_slice() {
        ["active", restarts] => Ok(restarts.to_string()),
        other => bail!("{UNIT}: {other:?}"),
    }
}
