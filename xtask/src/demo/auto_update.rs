//! Scenario auto-update: promote the app's newer build (v2) to the tag the
//! guests run (`prod`) in the lab registry; the lab user's podman
//! auto-update timer on the serving guest notices, pulls and restarts the
//! container; the VIP then returns the v2 page. Measures the time from the
//! promotion to the first v2 page. Then promotes the declared build back and
//! waits for the v1 page again, so the lab is left as lab.kdl declares it
//! (and the demo can be rehearsed again).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Demo, Page};
use crate::{cli::container::promote_in, progress::Progress, store::LockWait};

pub fn steps(demo: &mut Demo) -> anyhow::Result<()> {
    let (app, tag, declared, newer) = the_update(demo)?;
    demo.step("the VIP serves the v1 page", &format!("{app}:{tag} follows {declared}"), |demo| match demo.page()? {
        Page::V1 => Ok("v1 page".into()),
        Page::V2 => bail!(
            "the v2 page: {app}:{tag} is already promoted; `cargo xtask container promote {app} {declared} \
                 --tag {tag}` puts it back"
        ),
    })?;
    let serving = demo.serving_guest()?;

    let promoted = Instant::now();
    let digest = demo.step(
        &format!("promote {app} {newer} to {tag}"),
        &format!("{app}:{tag} in the lab registry is {newer}'s manifest"),
        |demo| promote(demo, &app, &newer, &tag),
    )?;
    demo.step("the VIP serves the v2 page", "podman auto-update pulled and restarted the container", |demo| {
        demo.wait_page(Page::V2, Duration::from_secs(600))?;
        Ok(format!("v2 page {:.1}s after the promotion", promoted.elapsed().as_secs_f64()))
    })?;
    demo.measure("auto_update_s", promoted.elapsed().as_secs_f64());
    demo.step(
        &format!("{serving} runs {newer}'s image"),
        &format!("the httpd container's image is {digest}"),
        |demo| {
            let out =
                demo.user_sh(&serving, "podman inspect httpd --format '{{.ImageDigest}}'", Duration::from_secs(60))?;
            match out.text.trim() == digest {
                true => Ok(digest.clone()),
                false => bail!("image digest {}", out.text.trim()),
            }
        },
    )?;

    let back = Instant::now();
    demo.step(&format!("promote {app} {declared} back to {tag}"), "the tag follows lab.kdl again", |demo| {
        promote(demo, &app, &declared, &tag)
    })?;
    demo.step("the VIP serves the v1 page again", "auto-update went back to v1", |demo| {
        demo.wait_page(Page::V1, Duration::from_secs(600))?;
        Ok(format!("v1 page {:.1}s after promoting back", back.elapsed().as_secs_f64()))
    })?;
    demo.measure("auto_update_back_s", back.elapsed().as_secs_f64());
    Ok(())
}

/// The app, its tag, the build the tag is declared on and the build made
/// from that one (httpd, prod, v1, v2).
fn the_update(demo: &Demo) -> anyhow::Result<(String, String, String, String)> {
    for container in &demo.lab().containers {
        for tag in &container.tags {
            let newer = container.builds.iter().find(|build| build.from.as_deref() == Some(tag.build.as_str()));
            if let Some(newer) = newer {
                return Ok((container.name.clone(), tag.name.clone(), tag.build.clone(), newer.name.clone()));
            }
        }
    }
    bail!("the lab has no container with a tag and a build made from the tagged one (httpd: tag prod v1, v2 from v1)")
}

/// `cargo xtask container promote APP BUILD --tag TAG`; returns the digest.
fn promote(demo: &Demo, app: &str, build: &str, tag: &str) -> anyhow::Result<String> {
    let session = demo.session;
    let lock = session.store.lock(LockWait::Wait)?;
    let facts = session.facts()?;
    let progress = Progress::new(true);
    promote_in(&session.lab, &session.graph, &facts, &session.store, &lock, &progress, app, build, tag)
        .with_context(|| format!("promoting {app}:{build} to {tag}"))
}
