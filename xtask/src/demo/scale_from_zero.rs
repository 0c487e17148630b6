//! Scenario scale-from-zero: no container runs on either guest before the
//! first request; a request to VIP:8080 starts the container on the VRRP
//! master only (socket activation, rootless under the lab user) and returns
//! the v1 page.

use std::time::{Duration, Instant};

use anyhow::bail;

use super::{APP_PORT, Demo, Page, TITLE};
use crate::guests::netns;

pub fn steps(demo: &mut Demo) -> anyhow::Result<()> {
    let guests = demo.guests();
    let vip = netns::segment(demo.lab()).vip.addr.to_string();
    for guest in &guests {
        demo.step_up(guest)?;
    }
    let primary = demo.primary()?;
    demo.step("the VRRP master holds the VIP", &format!("{vip} on {primary} only"), |demo| {
        demo.wait_vip_on(&primary, Duration::from_secs(120))
    })?;
    for guest in &guests {
        demo.step(
            &format!("no container on {guest} yet"),
            "`podman ps` as the lab user lists none",
            |demo| match demo.containers(guest)?.as_slice() {
                [] => Ok("none".into()),
                names => bail!("running: {}", names.join(", ")),
            },
        )?;
    }
    let asked = Instant::now();
    demo.step(
        "a request to the VIP returns the v1 page",
        &format!("GET http://{vip}:{APP_PORT}/ has {TITLE} and no cow"),
        |demo| {
            let seconds = demo.wait_page(Page::V1, Duration::from_secs(300))?;
            Ok(format!("v1 page after {seconds:.1}s"))
        },
    )?;
    demo.measure("first_request_s", asked.elapsed().as_secs_f64());
    for guest in &guests {
        let want: &[&str] = if *guest == primary { &["httpd"] } else { &[] };
        demo.step(
            &format!("container on {guest} after the request"),
            if want.is_empty() { "none (not the master)" } else { "httpd, rootless under the lab user" },
            |demo| {
                let names = demo.containers(guest)?;
                match names == want {
                    true if want.is_empty() => Ok("none".into()),
                    true => Ok(names.join(", ")),
                    false => bail!("podman ps: `{}`", names.join(", ")),
                }
            },
        )?;
    }
    Ok(())
}
