//! Scenario scale-from-zero: no container runs on either guest before the
//! first request; a request to VIP:8080 starts the container on the VRRP
//! master only (socket activation, rootless under the lab user) and returns
//! the v1 page.

use std::time::Duration;

use anyhow::bail;

use super::{Demo, Report, wait_for};
use crate::{guests::netns, lab::Lab, store::Store};

/// What the v1 page has and v2's lacks.
pub const V1_TITLE: &str = "<title>RHEL for Edge</title>";
const V2_ONLY: &str = "auto-update";
const APP_PORT: u16 = 8080;

pub fn run(lab: &Lab, store: &Store) -> Report {
    let mut demo = Demo::new(lab, store);
    let _ = steps(&mut demo);
    demo.report("scale-from-zero")
}

fn steps(demo: &mut Demo) -> anyhow::Result<()> {
    let guests: Vec<String> = demo.lab.guests.iter().map(|guest| guest.name.clone()).collect();
    let vip = netns::segment(demo.lab).vip.addr.to_string();
    for guest in &guests {
        demo.step(&format!("{guest} is up"), "its check shell answers and the system is running", |demo| {
            wait_for(Duration::from_secs(900), Duration::from_secs(3), || {
                let out = demo.guest_sh(guest, "systemctl is-system-running --wait", Duration::from_secs(120))?;
                Ok(Some(out.text.trim().to_string()))
            })
        })?;
    }
    let master = demo.step("one guest holds the VIP", &format!("{vip} on exactly one guest"), |demo| {
        wait_for(Duration::from_secs(120), Duration::from_secs(2), || {
            let mut holders = Vec::new();
            for guest in &guests {
                let out = demo.guest_sh(guest, "ip -o -4 addr show", Duration::from_secs(30))?;
                if out.text.contains(&format!("inet {vip}/")) {
                    holders.push(guest.clone());
                }
            }
            Ok((holders.len() == 1).then(|| holders.remove(0)))
        })
    })?;
    let expected_master =
        demo.lab.guests.iter().find(|guest| guest.vrrp_state == crate::lab::VrrpState::Master).map(|g| g.name.clone());
    if let Some(expected) = expected_master {
        demo.step("the VIP is on the VRRP master", &expected.clone(), |_| match master == expected {
            true => Ok(master.clone()),
            false => bail!("{master} holds it"),
        })?;
    }
    for guest in &guests {
        demo.step(&format!("no container on {guest} yet"), "`podman ps` as the lab user lists none", |demo| {
            let out = demo.user_sh(guest, "podman ps --format '{{.Names}}'", Duration::from_secs(120))?;
            match (out.status, out.text.trim()) {
                (0, "") => Ok("none".into()),
                (0, names) => bail!("running: {names}"),
                (status, text) => bail!("podman ps failed ({status}): {text}"),
            }
        })?;
    }
    demo.step(
        "a request to the VIP returns the v1 page",
        &format!("GET http://{vip}:{APP_PORT}/ has {V1_TITLE}"),
        |demo| {
            wait_for(Duration::from_secs(300), Duration::from_secs(2), || {
                let body = demo.get_vip(APP_PORT, Duration::from_secs(120))?;
                if body.contains(V1_TITLE) && !body.contains(V2_ONLY) {
                    return Ok(Some(format!("v1 page, {} bytes", body.len())));
                }
                bail!("unexpected page: {}", body.chars().take(200).collect::<String>())
            })
        },
    )?;
    for guest in &guests {
        let want = if *guest == master { "httpd" } else { "" };
        demo.step(
            &format!("container on {guest} after the request"),
            if want.is_empty() { "none (not the master)" } else { "httpd, rootless under the lab user" },
            |demo| {
                let out = demo.user_sh(guest, "podman ps --format '{{.Names}}'", Duration::from_secs(120))?;
                match out.text.trim() == want {
                    true => Ok(if want.is_empty() { "none".into() } else { want.into() }),
                    false => bail!("podman ps: `{}`", out.text.trim()),
                }
            },
        )?;
    }
    Ok(())
}
