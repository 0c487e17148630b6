//! How many requests an install and an upgrade make to the lab's file
//! server, counted by the server itself: the real installer pulls a real
//! bootable Debian OSTree image (`guests_local/image.rs`, cached) from the
//! served repo as the `repo` stage lays it out (from-scratch delta per
//! image, delta from the parent, summary), then pulls its child as the
//! guest's update staging would. Counts, not times, are asserted; the
//! times are printed for the notes.

#[path = "guests_local/image.rs"]
mod image;

use std::time::Instant;

use edgelab::{
    guests::{installer, pull_server},
    stages::repo::{DeltaCache, DeltaPlan, generate_deltas},
    tools::ostree::Repo,
};

/// What the issue allows an install: a handful of requests, not thousands.
const MAX_INSTALL_REQUESTS: u64 = 50;
/// See the upgrade's assert.
const MAX_UPGRADE_REQUESTS: u64 = 6;
/// The summary, config, delta index and 404 bodies an upgrade reads
/// beside the delta (about 1.1 KB for this repo).
const UPGRADE_METADATA_BYTES: u64 = 2_000;

#[test]
fn an_install_pulls_through_the_from_scratch_delta() {
    let tmp = tempfile::Builder::new().prefix("edgelab-install-requests-").tempdir_in("/var/tmp").unwrap();
    let (served, v1) = image::served_copy(tmp.path());
    let repo = Repo::at(served.join("repo"));
    let plan = DeltaPlan { image: "v1".into(), parent: None, to: v1.clone(), from_scratch: true };
    assert_eq!(generate_deltas(&repo, &[plan], &DeltaCache::none(), &|_| {}).unwrap(), vec![v1.clone()]);
    repo.update_summary().unwrap();

    let started = Instant::now();
    let server = pull_server::start(&served, &tmp.path().join("install.log")).unwrap();
    let spec = install_spec(&server.base_url, &v1, "edge-test");
    let sysroot = tmp.path().join("sysroot");
    let installed = installer::install_sysroot(&spec, &sysroot).unwrap();
    let install = server.finish().counters;
    let install_time = started.elapsed();
    assert_eq!(installed.commit, v1);
    let log = std::fs::read_to_string(tmp.path().join("install.log")).unwrap();
    assert!(
        install.requests <= MAX_INSTALL_REQUESTS,
        "the install made {} requests, at most {MAX_INSTALL_REQUESTS} wanted:\n{log}",
        install.requests
    );
    // The delta's parts plus its fallback objects (files over 4 MB, fetched
    // as they are) hold the commit once; ostree 2022.7 fetching the loose
    // objects as well would double it.
    let object_bytes = dir_bytes(&served.join("repo/objects"));
    assert!(
        install.bytes_sent * 10 <= object_bytes * 11,
        "the install fetched {} bytes; the image's objects are {object_bytes}:\n{log}",
        install.bytes_sent
    );
    let delta_bytes = repo.static_delta_bytes(&v1).unwrap();

    let v2 = image::commit_on_top(&served.join("repo"), "v2", &[("usr/etc/edgelab-v2.txt", "v2\n")]);
    let plan =
        DeltaPlan { image: "v2".into(), parent: Some(("v1".into(), v1.clone())), to: v2.clone(), from_scratch: false };
    generate_deltas(&repo, &[plan], &DeltaCache::none(), &|_| {}).unwrap();
    repo.update_summary().unwrap();
    let started = Instant::now();
    let server = pull_server::start(&served, &tmp.path().join("upgrade.log")).unwrap();
    let spec = installer::InstallSpec { pull_url: Some(format!("{}repo/", server.base_url)), commit: None, ..spec };
    let upgraded = installer::pull_and_deploy(&spec, &sysroot).unwrap();
    let upgrade = server.finish().counters;
    assert_eq!(upgraded.commit, v2);
    let upgrade_delta = repo.static_delta_bytes(&format!("{v1}-{v2}")).unwrap();
    eprintln!(
        "install: {} requests, {} bytes (from-scratch delta {delta_bytes} bytes), {:.1?} pull+deploy+configure; \
         upgrade: {} requests, {} bytes (delta {upgrade_delta} bytes), {:.1?}",
        install.requests,
        install.bytes_sent,
        install_time,
        upgrade.requests,
        upgrade.bytes_sent,
        started.elapsed()
    );
    // Six requests is what ostree 2022.7 (Debian 12) needs to pull a ref
    // through a delta, and what the guest's `ostree admin upgrade` makes:
    // summary.sig (asked first, 404 here), summary, config, the delta's
    // index, its superblock (parts inline), and the written commit's
    // detached metadata (404), which it asks for again before walking the
    // commit. The bytes are the delta plus those few small files.
    let upgrade_log = std::fs::read_to_string(tmp.path().join("upgrade.log")).unwrap();
    // Under load, ostree 2022.7 may start walking the new commit before the
    // superblock's inline parts are written and fetch an object the delta
    // also carries (the race of ostree issue 2053, small here: seen once in
    // five runs on 2 busy cores, one .dirtree of 2 KB; once in a CI
    // rehearsal, the new file's .filez of 0.1 KB). At most two such objects
    // are allowed beyond the six. A pull without the delta fetches the
    // .commit and the dirtrees down to the new file besides, so it fails.
    let raced = upgrade_log
        .lines()
        .filter(|line| {
            line.contains(" 200 ") && [".dirtree", ".dirmeta", ".filez"].iter().any(|kind| line.ends_with(kind))
        })
        .count() as u64;
    assert!(
        raced <= 2 && !upgrade_log.lines().any(|line| line.contains(" 200 ") && line.ends_with(".commit")),
        "the upgrade fetched objects beside its delta:\n{upgrade_log}"
    );
    assert!(
        upgrade.requests <= MAX_UPGRADE_REQUESTS + raced
            && upgrade.bytes_sent * 10 <= upgrade_delta * 11 + 10 * UPGRADE_METADATA_BYTES,
        "the upgrade made {} requests, {} bytes, for a {upgrade_delta}-byte delta:\n{upgrade_log}",
        upgrade.requests,
        upgrade.bytes_sent
    );
    installer::remove_sysroot(&sysroot).unwrap();
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.metadata().unwrap().len())
        .sum()
}

/// A second repo of the same commit takes its from-scratch delta from the
/// delta cache instead of generating it, and an install pulls through the
/// cached delta as through a generated one: the same handful of requests.
#[test]
fn a_cached_delta_serves_an_install_like_a_generated_one() {
    let tmp = tempfile::Builder::new().prefix("edgelab-delta-cache-").tempdir_in("/var/tmp").unwrap();
    let cache = DeltaCache::at(&tmp.path().join("cache"));
    let notes = std::cell::RefCell::new(Vec::new());
    let note = |line: &str| notes.borrow_mut().push(line.to_string());

    let (first, v1) = image::served_copy(&tmp.path().join("a"));
    let plan = DeltaPlan { image: "v1".into(), parent: None, to: v1.clone(), from_scratch: true };
    generate_deltas(&Repo::at(first.join("repo")), std::slice::from_ref(&plan), &cache, &note).unwrap();
    assert_eq!(notes.borrow().as_slice(), ["static delta from scratch -> v1"]);
    assert!(tmp.path().join("cache").join(&v1).join("superblock").is_file(), "the delta was not kept");

    let (second, same) = image::served_copy(&tmp.path().join("b"));
    assert_eq!(same, v1);
    let repo = Repo::at(second.join("repo"));
    assert_eq!(generate_deltas(&repo, &[plan], &cache, &note).unwrap(), vec![v1.clone()]);
    assert_eq!(notes.borrow()[1], "static delta from scratch -> v1 (from the delta cache)");
    repo.update_summary().unwrap();
    assert_eq!(
        repo.static_delta_bytes(&v1).unwrap(),
        Repo::at(first.join("repo")).static_delta_bytes(&v1).unwrap(),
        "the cached delta differs from the generated one"
    );

    let server = pull_server::start(&second, &tmp.path().join("install.log")).unwrap();
    let spec = install_spec(&server.base_url, &v1, "edge-cache");
    let installed = installer::install_sysroot(&spec, &tmp.path().join("sysroot")).unwrap();
    let install = server.finish().counters;
    assert_eq!(installed.commit, v1);
    assert!(
        install.requests <= MAX_INSTALL_REQUESTS,
        "the install through the cached delta made {} requests, at most {MAX_INSTALL_REQUESTS} wanted",
        install.requests
    );
}

/// An install of `commit` through the pull server at `base_url`, as the lab
/// host's guests make it.
fn install_spec(base_url: &str, commit: &str, hostname: &str) -> installer::InstallSpec {
    installer::InstallSpec {
        remote_url: "http://10.88.0.1:8000/repo/".into(),
        pull_url: Some(format!("{base_url}repo/")),
        ostree_ref: image::OSTREE_REF.into(),
        commit: Some(commit.to_string()),
        kargs: installer::default_kargs(),
        config: installer::GuestConfig { hostname: hostname.into(), ..Default::default() },
    }
}
