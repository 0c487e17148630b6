//! OS channels through the real tools: a served repo whose shared ref ends
//! on the newest image (v2, as the `repo` stage leaves it), published with
//! the channel at v2 and then at v1 (`image promote v2`, `image promote
//! v1`); after each, the channel's ref in the published repo follows, and
//! a guest installed from it by the real installer gets that commit: as
//! the local world's install stage does (the published channel's commit,
//! which the installer checks the ref holds, through the from-scratch
//! delta of lab.kdl's image; a promotion makes none), and as Anaconda's
//! `ostreesetup --ref` does (the ref, no pin).
//! Each publish is its own folder: the earlier one is untouched, and the
//! objects are the served repo's, hard-linked.

#[path = "guests_local/image.rs"]
mod image;

use std::{os::unix::fs::MetadataExt as _, path::Path, time::Instant};

use edgelab::{
    guests::{installer, pull_server},
    stages::{
        publish::{PublishedChannel, publish_tree},
        repo::DeltaCache,
    },
    tools::ostree::Repo,
};

/// What an install through a from-scratch delta may take (install_requests).
const MAX_INSTALL_REQUESTS: u64 = 50;

#[test]
fn promote_v2_then_v1_moves_the_channel_and_what_installs_get() {
    let tmp = tempfile::Builder::new().prefix("edgelab-os-channels-").tempdir_in("/var/tmp").unwrap();
    let (served, v1) = image::served_copy(tmp.path());
    let v2 = image::commit_on_top(&served.join("repo"), "v2", &[("usr/etc/edgelab-v2.txt", "v2\n")]);
    let served_repo = Repo::at(served.join("repo"));
    assert_eq!(served_repo.rev_parse(image::OSTREE_REF).unwrap().as_deref(), Some(v2.as_str()));
    let cache = DeltaCache::at(&tmp.path().join("delta-cache"));
    let notes = std::cell::RefCell::new(Vec::new());
    let note = |line: &str| notes.borrow_mut().push(line.to_string());

    let started = Instant::now();
    let at_v2 = tmp.path().join("published-v2");
    let generated =
        publish_tree(&served.join("repo"), &at_v2.join("repo"), &[edge("v2", &v2)], &cache, true, &note).unwrap();
    // A promotion generates no from-scratch delta (minutes of LZMA): the
    // install after it pulls v2's objects one by one.
    assert!(generated.is_empty(), "a promotion generated {generated:?}");
    assert!(
        notes.borrow().iter().any(|line| line.contains("no from-scratch delta of it")),
        "no note says so: {:?}",
        notes.borrow()
    );
    assert_eq!(rev_parse(&at_v2, image::OSTREE_REF), v2);
    assert_eq!(install(tmp.path(), &at_v2, "after-promote-v2", Some(&v2), false), v2);
    eprintln!("promote v2: publish and install in {:.1?}", started.elapsed());

    let started = Instant::now();
    let at_v1 = tmp.path().join("published-v1");
    publish_tree(&served.join("repo"), &at_v1.join("repo"), &[edge("v1", &v1)], &cache, true, &note).unwrap();
    assert_eq!(rev_parse(&at_v1, image::OSTREE_REF), v1);
    assert_eq!(install(tmp.path(), &at_v1, "after-promote-v1", Some(&v1), true), v1);
    assert_eq!(install(tmp.path(), &at_v1, "ostreesetup-after-promote-v1", None, false), v1);
    eprintln!("promote v1: publish and install in {:.1?}", started.elapsed());

    // Nothing published before was rewritten, and the served repo keeps
    // every image's commit, its own ref unmoved.
    assert_eq!(rev_parse(&at_v2, image::OSTREE_REF), v2);
    assert_eq!(served_repo.rev_parse(image::OSTREE_REF).unwrap().as_deref(), Some(v2.as_str()));
    assert!(Repo::at(at_v1.join("repo")).has_commit(&v2) && Repo::at(at_v2.join("repo")).has_commit(&v1));
    let object = first_file(&served.join("repo/objects"));
    let linked = at_v1.join("repo/objects").join(object.strip_prefix(served.join("repo/objects")).unwrap());
    assert_eq!(std::fs::metadata(&object).unwrap().ino(), std::fs::metadata(&linked).unwrap().ino());
}

fn edge(image: &str, commit: &str) -> PublishedChannel {
    PublishedChannel {
        name: "edge".into(),
        ostree_ref: image::OSTREE_REF.into(),
        image: image.into(),
        declared: "v1".into(),
        commit: commit.into(),
    }
}

fn rev_parse(published: &Path, name: &str) -> String {
    Repo::at(published.join("repo")).rev_parse(name).unwrap().unwrap_or_default()
}

/// Installs from `published` over HTTP: `pinned` as the install stage
/// names the channel's commit, or the ref alone; returns the deployed
/// commit. `through_delta`: the commit has a from-scratch delta, so the
/// install is held to its bound of requests.
fn install(tmp: &Path, published: &Path, hostname: &str, pinned: Option<&str>, through_delta: bool) -> String {
    let server = pull_server::start(published, &tmp.join(format!("{hostname}.log"))).unwrap();
    let spec = installer::InstallSpec {
        remote_url: "http://10.88.0.1:8000/repo/".into(),
        pull_url: Some(format!("{}repo/", server.base_url)),
        ostree_ref: image::OSTREE_REF.into(),
        commit: pinned.map(str::to_string),
        kargs: installer::default_kargs(),
        config: installer::GuestConfig { hostname: hostname.into(), ..Default::default() },
    };
    let sysroot = tmp.join(format!("sysroot-{hostname}"));
    let installed = installer::install_sysroot(&spec, &sysroot).unwrap();
    let counters = server.finish().counters;
    // Without the commit first, ostree 2022.7 also fetches loose objects
    // beside the delta (see `installer::pull`), so only pinned installs
    // are held to the bound.
    assert!(
        !through_delta || counters.requests <= MAX_INSTALL_REQUESTS,
        "the install made {} requests: the channel's commit has no from-scratch delta",
        counters.requests
    );
    installer::remove_sysroot(&sysroot).unwrap();
    installed.commit
}

fn first_file(dir: &Path) -> std::path::PathBuf {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|entry| entry.unwrap())
        .find(|entry| entry.file_type().is_file())
        .map(|entry| entry.into_path())
        .expect("an object")
}

/// `image promote` with an image or channel the lab lacks says which it
/// has, and records nothing.
#[test]
fn promoting_an_unknown_image_or_channel_names_what_the_lab_has() {
    let store = tempfile::Builder::new().prefix("edgelab-promote-errors-").tempdir_in("/var/tmp").unwrap();
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab.kdl");
    let promote = |args: &[&str]| {
        edgelab::tools::Cmd::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--lab")
            .arg(&lab)
            .arg("--store")
            .arg(store.path())
            .args(["image", "promote"])
            .args(args)
            .run_unchecked()
            .unwrap()
    };
    let unknown_image = promote(&["v9"]);
    assert!(!unknown_image.status.success());
    assert!(unknown_image.stderr.contains("no image `v9` in the lab; images are: v1, v2"), "{}", unknown_image.stderr);
    let unknown_channel = promote(&["v2", "--channel", "stable"]);
    assert!(!unknown_channel.status.success());
    assert!(
        unknown_channel.stderr.contains("no channel `stable` in the lab; channels are: edge"),
        "{}",
        unknown_channel.stderr
    );
    assert!(!store.path().join("run").join(edgelab::stages::publish::PROMOTIONS_FILE).exists());
}

/// The stage itself on two small commits: a promotion recorded in run
/// state is what it publishes, its fact changes the stage's key (promoting
/// back gives lab.kdl's key again), the output digest follows the channel's
/// commit, and a promotion to an image the served repo lacks is an error
/// naming the images it has.
#[test]
fn the_publish_stage_follows_the_recorded_promotion() {
    use edgelab::{
        graph::{self, StageId, StageKind},
        key::{Facts, Preimage},
        progress::Progress,
        stages::{Input, StageCtx, publish},
        store::Store,
    };
    let tmp = tempfile::Builder::new().prefix("edgelab-publish-stage-").tempdir_in("/var/tmp").unwrap();
    let served = tmp.path().join("served");
    let repo = Repo::init(served.join("repo"), edgelab::tools::ostree::RepoMode::Archive).unwrap();
    let commit = |name: &str| {
        let tree = tmp.path().join(format!("tree-{name}"));
        std::fs::create_dir_all(tree.join("usr/etc")).unwrap();
        std::fs::write(tree.join("usr/etc/image"), name).unwrap();
        edgelab::tools::Cmd::new("ostree")
            .arg(format!("--repo={}", repo.path.display()))
            .args(["commit", "-b", image::OSTREE_REF, "-s", name])
            .arg(format!("--tree=dir={}", tree.display()))
            .run()
            .unwrap();
        repo.rev_parse(image::OSTREE_REF).unwrap().unwrap()
    };
    let (v1, v2) = (commit("v1"), commit("v2"));

    let lab_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab.kdl");
    let lab = edgelab::lab::parse_lab_file(&lab_file).unwrap();
    let graph = graph::build(&lab);
    let stage = graph.stage(&StageId::new(StageKind::Publish, "served")).unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let progress = Progress::new(true);
    let input = Input {
        output_digest: "sha256:served".into(),
        out: served.clone(),
        extra: serde_json::json!({"images": {"v1": {"commit": v1}, "v2": {"commit": v2}}}),
    };
    let key = || {
        let mut facts = Facts::default();
        for name in &stage.state {
            if let Some(value) = publish::state_fact(&store, name) {
                facts.state.insert(name.clone(), value);
            }
        }
        Preimage::of(stage, &facts, [("repo".to_string(), input.output_digest.clone())].into()).key()
    };
    let publish_into = |name: &str| {
        let out = tmp.path().join(name);
        std::fs::create_dir_all(&out).unwrap();
        let ctx = StageCtx {
            lab: &lab,
            stage,
            inputs: [("repo".to_string(), input.clone())].into(),
            out: out.clone(),
            store: &store,
            progress: &progress,
        };
        publish::run(&ctx).map(|output| (out, output))
    };

    let declared_key = key();
    let (at_v1, declared) = publish_into("declared").unwrap();
    assert_eq!(rev_parse(&at_v1, image::OSTREE_REF), v1);

    publish::record_promotion(&store, "edge", Some(publish::Promotion { image: "v2".into() })).unwrap();
    assert_ne!(key(), declared_key, "a promotion must change the publish stage's key");
    let (at_v2, promoted) = publish_into("promoted").unwrap();
    assert_eq!(rev_parse(&at_v2, image::OSTREE_REF), v2);
    let from_scratch = |published: &Path, commit: &str| {
        Repo::at(published.join("repo")).static_delta_dir(commit).unwrap().join("superblock").is_file()
    };
    assert!(from_scratch(&at_v1, &v1), "lab.kdl's image gets its from-scratch delta");
    assert!(!from_scratch(&at_v2, &v2), "a promotion generated a from-scratch delta");
    // One made before, in the delta cache, is used.
    let cache = edgelab::stages::repo::DeltaCache::for_store(&store).unwrap();
    let plan =
        edgelab::stages::repo::DeltaPlan { image: "v2".into(), parent: None, to: v2.clone(), from_scratch: true };
    edgelab::stages::repo::generate_deltas(&repo, &[plan], &cache, &|_| {}).unwrap();
    // Only in the cache, not in the served repo the publish links from.
    repo.delete_static_delta(&v2).unwrap();
    let (at_v2_cached, _) = publish_into("promoted-cached").unwrap();
    assert!(from_scratch(&at_v2_cached, &v2), "the cached from-scratch delta was not used");
    assert_ne!(promoted.output_digest, declared.output_digest);
    let channel = publish::published_channel(&promoted.extra, "edge").unwrap();
    assert_eq!((channel.image.as_str(), channel.declared.as_str(), channel.commit.as_str()), ("v2", "v1", v2.as_str()));
    assert_eq!(rev_parse(&at_v1, image::OSTREE_REF), v1, "the earlier publish was rewritten");

    publish::record_promotion(&store, "edge", None).unwrap();
    assert_eq!(key(), declared_key, "promoting back gives lab.kdl's key");

    publish::record_promotion(&store, "edge", Some(publish::Promotion { image: "v7".into() })).unwrap();
    let err = format!("{:#}", publish_into("unknown").unwrap_err());
    assert!(err.contains("channel `edge` points at image `v7`") && err.contains("its images: v1, v2"), "{err}");
}
