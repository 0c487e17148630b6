//! Scenario failover: destroy the primary guest (as hard as `virsh
//! destroy`); the next request to the VIP is answered by the backup, which
//! starts its own container; measures the time from the destroy to the first
//! good answer. Then starts the primary again and shows that it takes the
//! VIP back (its VRRP priority is higher) and serves the page.

use std::time::{Duration, Instant};

use anyhow::bail;

use super::{Demo, Page};

pub fn steps(demo: &mut Demo) -> anyhow::Result<()> {
    let primary = demo.primary()?;
    let backup = demo.backup()?;
    for guest in [&primary, &backup] {
        demo.step_up(guest)?;
    }
    demo.step("the primary holds the VIP", &format!("the VIP on {primary} only"), |demo| {
        demo.wait_vip_on(&primary, Duration::from_secs(300))
    })?;
    demo.step("the VIP answers before the failure", "the v1 page", |demo| {
        let seconds = demo.wait_page(Page::V1, Duration::from_secs(300))?;
        Ok(format!("v1 page in {seconds:.1}s"))
    })?;

    let destroyed = Instant::now();
    demo.step(&format!("destroy {primary}"), "its qemu killed with SIGKILL", |demo| {
        demo.destroy(&primary)?;
        match demo.is_running(&primary) {
            false => Ok(format!("{primary} is down")),
            true => bail!("{primary} still runs"),
        }
    })?;
    let mut accepted = None;
    demo.step("the backup answers on the VIP", "the v1 page, served by the backup", |demo| {
        let at = demo.wait_vip_accepts(Duration::from_secs(300))?;
        accepted = Some(at.duration_since(destroyed).as_secs_f64());
        demo.wait_page(Page::V1, Duration::from_secs(300))?;
        Ok(format!("v1 page {:.1}s after the destroy", destroyed.elapsed().as_secs_f64()))
    })?;
    demo.measure("failover_s", destroyed.elapsed().as_secs_f64());
    // The failover's two parts, on the host's clock: VRRP's takeover (the
    // VIP accepts connections again: systemd holds the socket on the
    // backup) and the first request starting the backup's container.
    if let Some(seconds) = accepted {
        demo.measure("vip_moved_s", seconds);
    }
    demo.step(&format!("{backup} holds the VIP"), &format!("the VIP on {backup}"), |demo| {
        demo.wait_vip_on(&backup, Duration::from_secs(30))
    })?;
    demo.step_runs_app(&format!("{backup} started its own container"), &backup)?;

    let restarted = Instant::now();
    demo.step(&format!("start {primary} again"), "its launcher boots it from its own disk", |demo| {
        demo.start(&primary)?;
        match demo.is_running(&primary) {
            true => Ok(format!("{primary} is booting")),
            false => bail!("{primary} did not start"),
        }
    })?;
    demo.step(&format!("{primary} takes the VIP back"), &format!("the VIP on {primary} only"), |demo| {
        demo.wait_up(&primary, Duration::from_secs(900))?;
        demo.wait_vip_on(&primary, Duration::from_secs(300))?;
        Ok(format!("{primary} holds it {:.1}s after its start", restarted.elapsed().as_secs_f64()))
    })?;
    demo.measure("primary_back_s", restarted.elapsed().as_secs_f64());
    demo.step("the VIP answers from the primary", "the v1 page", |demo| {
        let seconds = demo.wait_page(Page::V1, Duration::from_secs(300))?;
        Ok(format!("v1 page in {seconds:.1}s"))
    })?;
    demo.step_runs_app(&format!("{primary} serves it"), &primary)?;
    Ok(())
}
