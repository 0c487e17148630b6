//! Stage `install <guest>` (local world): the guest's pristine disk.
//!
//! Pulls the commit the kickstart's channel points at (as published by the
//! `publish` stage, so a promotion makes a new install) over HTTP from the
//! lab's running file server,
//! from inside the lab's network namespace and at the address the guest
//! itself uses, so the server's counts show the install as the demo's
//! server did (this install's requests and bytes, the lab host's share of
//! the counters, are also kept in the artifact), deploys it into a fresh sysroot,
//! applies the guest's kickstart content and the local guest's greenboot and
//! update units (`guest/local/`), then writes `disk.img` with `mkfs.ext4 -d`.
//! The output digest is sha256 of the disk; guests run on copies of it.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, bail};
use serde_json::json;

use super::{StageCtx, StageOutput};
use crate::{
    guests::{
        installer::{self, GuestConfig, InstallSpec, StaticNetwork, User},
        netns,
    },
    services::{self, file_server},
};

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let guest_name = &ctx.stage.id.name;
    let guest = ctx.lab.guest(guest_name).with_context(|| format!("no guest `{guest_name}` in the lab"))?;
    let kickstart = ctx.inputs.get("kickstart").context("install needs the guest's kickstart")?;
    let published = ctx.inputs.get("published").context("install needs the published repo")?;
    let channel_name = &ctx.lab.kickstart.channel;
    let channel = super::publish::published_channel(&published.extra, channel_name)
        .with_context(|| format!("the kickstart's channel `{channel_name}` in the published repo"))?;
    let segment = netns::segment(ctx.lab);
    let port = segment.port(guest_name).context("the guest has no place on the lab segment")?;

    let mut config = guest_config(ctx, &kickstart.out, guest_name)?;
    config.network = Some(StaticNetwork { address: port.address, gateway: None, mac: port.mac.clone() });
    config.configure_script = kickstart.extra.get("configure").and_then(|it| it.as_str()).map(String::from);
    let spec = InstallSpec {
        remote_url: format!("http://{}:{}/repo/", segment.host.addr, ctx.lab.file_server.port),
        pull_url: None,
        ostree_ref: channel.ostree_ref.clone(),
        commit: Some(channel.commit.clone()),
        kargs: installer::default_kargs(),
        config,
    };

    let started = Instant::now();
    let sysroot = ctx.out.join("sysroot");
    // The runner started the lab's file server for this stage
    // (`services_needed`); it serves the repo this install was keyed on.
    let counters = services::connect_address(file_server::listen_address(ctx.lab));
    let client = std::net::IpAddr::V4(segment.host.addr);
    let (installed, served) = netns::in_lab(ctx.lab, ctx.store, || {
        let before = file_server::counters(counters).context("reading the lab file server's counters")?;
        let installed = installer::install_sysroot(&spec, &sysroot);
        let after = file_server::counters(counters).context("reading the lab file server's counters")?;
        anyhow::Ok((installed, after.client(client).since(&before.client(client))))
    })??;
    let installed = installed?;
    let pulled_in = started.elapsed();

    let disk = ctx.out.join("disk.img");
    installer::write_disk(&sysroot, &disk, guest.disk_gib << 30)?;
    installer::remove_sysroot(&sysroot)?;
    let digest = crate::hash::digest_path(&disk, None).with_context(|| format!("hashing {}", disk.display()))?;
    Ok(StageOutput {
        output_digest: digest,
        extra: json!({
            "commit": installed.commit,
            "channel": channel.name,
            "image": channel.image,
            "deployment": installed.deployment,
            "disk": "disk.img",
            "address": port.address.to_string(),
            "file_server": {
                "url": spec.remote_url,
                "requests": served.requests,
                "bytes": served.bytes_sent,
            },
            "pull_and_deploy_ms": pulled_in.as_millis() as u64,
            "total_ms": started.elapsed().as_millis() as u64,
        }),
    })
}

/// The guest's configuration from its kickstart artifact (`<guest>.ks`,
/// `files/`) and the local guest's own units (`guest/local/`).
fn guest_config(ctx: &StageCtx, kickstart_out: &Path, guest_name: &str) -> anyhow::Result<GuestConfig> {
    let local = local_files(ctx)?;
    let mut trees = vec![local.clone()];
    let files = kickstart_out.join("files");
    if files.is_dir() {
        trees.push(files);
    }
    let mut enable: Vec<String> = [
        "edgelab-greenboot.service",
        "edgelab-update-stage.timer",
        "edgelab-update-done.service",
        "edgelab-shell.service",
    ]
    .map(String::from)
    .to_vec();
    let ks = kickstart_out.join(format!("{guest_name}.ks"));
    if ks.exists() {
        let text = std::fs::read_to_string(&ks).with_context(|| format!("reading {}", ks.display()))?;
        enable.extend(enabled_units(&text));
    }
    enable.dedup();
    let password_hash = match &ctx.lab.kickstart.password_hash_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading the password hash {}", file.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    Ok(GuestConfig {
        hostname: guest_name.to_string(),
        user: Some(User { name: ctx.lab.kickstart.user.clone(), password_hash }),
        trees,
        enable,
        network: None,
        configure_script: None,
    })
}

/// systemd generators a local guest has no use for, masked (a link to
/// /dev/null in /etc/systemd/system-generators, systemd.generator(7)): they
/// find no encrypted, integrity or verity volume, GPT auto-mount partition,
/// hibernation image, system update, rc.local, SysV script without a unit or
/// `systemd.run=`, and write nothing, yet each exec costs 150-300 ms under TCG
/// (timed one by one in a booted guest) in the 5.4 s between systemd's start
/// and its first job. Those that write units stay: ostree's, fstab, getty and
/// debug (it reads the launcher's `systemd.mask=` arguments).
pub const MASKED_GENERATORS: &[&str] = &[
    "systemd-cryptsetup-generator",
    "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator",
    "systemd-integritysetup-generator",
    "systemd-veritysetup-generator",
    "systemd-system-update-generator",
    "systemd-rc-local-generator",
    "systemd-sysv-generator",
    "systemd-run-generator",
];

/// `guest/local/` as a tree laid over the guest's root, built in the
/// stage's scratch folder.
fn local_files(ctx: &StageCtx) -> anyhow::Result<PathBuf> {
    let source = ctx.lab.root.join("guest/local");
    if !source.is_dir() {
        bail!("{} is missing: it holds the local guest's greenboot and update units", source.display());
    }
    let tree = ctx.out.join("local-tree");
    lay_out_local_tree(&source, &tree)?;
    Ok(tree)
}

/// Lays `source` (a `guest/local/` folder) out in `tree` as it goes over a
/// local guest's root: its `bin/` to /etc/edgelab/bin, its `units/` to
/// /etc/systemd/system, and the masks of [`MASKED_GENERATORS`]. Laying it
/// out again over the same `tree` replaces what it laid before.
pub fn lay_out_local_tree(source: &Path, tree: &Path) -> anyhow::Result<()> {
    for (sub, dest) in [("bin", "etc/edgelab/bin"), ("units", "etc/systemd/system")] {
        let dest = tree.join(dest);
        std::fs::create_dir_all(&dest)?;
        for entry in
            std::fs::read_dir(source.join(sub)).with_context(|| format!("reading {}/{sub}", source.display()))?
        {
            let entry = entry?;
            std::fs::copy(entry.path(), dest.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    let generators = tree.join("etc/systemd/system-generators");
    std::fs::create_dir_all(&generators)?;
    for name in MASKED_GENERATORS {
        let link = generators.join(name);
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link).with_context(|| format!("replacing {}", link.display()))?;
        }
        std::os::unix::fs::symlink("/dev/null", &link).with_context(|| format!("masking the generator {name}"))?;
    }
    Ok(())
}

/// Units a kickstart enables: `services --enabled=a,b` and `systemctl enable`
/// lines of its %post sections (user units, `--user`/`--global`, excluded).
fn enabled_units(ks: &str) -> Vec<String> {
    let mut units = Vec::new();
    for line in ks.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("services ") {
            for word in rest.split_whitespace() {
                if let Some(list) = word.strip_prefix("--enabled=") {
                    units.extend(list.split(',').filter(|it| !it.is_empty()).map(String::from));
                }
            }
        } else if let Some(rest) = line.strip_prefix("systemctl enable ") {
            if rest.contains("--user") || rest.contains("--global") || rest.contains('$') {
                continue;
            }
            units.extend(rest.split_whitespace().filter(|word| !word.starts_with('-')).map(String::from));
        }
    }
    units
}
