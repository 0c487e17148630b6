//! Composes through osbuild-composer's Weldr API, against the fake composer
//! in `support/fake_weldr.rs` (real OSTree commits, real tarballs), and the
//! `blueprint` and `compose` stages run by the real runner into a real store.

#[path = "support/demo_lab.rs"]
mod demo_lab;
#[path = "support/fake_weldr.rs"]
mod fake_weldr;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use edgelab::{
    compose::{
        ComposeBackend, ComposeRequest,
        weldr::{self, WeldrClient, WeldrComposer, WeldrConfig},
    },
    graph::{self, Graph, StageId, StageKind},
    key::Facts,
    lab::{self, Auto, Backend, Lab},
    plan::{self, Status},
    progress::Progress,
    runner::{self, Outcome, Summary},
    stages,
    store::{LockWait, Store},
    tools::Cmd,
};
use fake_weldr::{FakeConfig, FakeWeldr};
use serde_json::{Value, json};

const BLUEPRINT: &str = r#"name = "RFE"
description = "RHEL for Edge"
version = "0.0.1"

[[packages]]
name = "jq"
version = "*"

[[packages]]
name = "keepalived"
version = "*"

[customizations.firewall]
ports = ["8080:tcp"]

[[customizations.user]]
name = "core"
password = "$6$edgelab$xv/z29/M.jusV28dP6K0JGwJWukWc4HWTYlhn2qM9rBJjLtkKsocoNQJ4wqyBxKsxQ6dgsmApHHN8o/.tDa/U1"
groups = ["wheel"]

[customizations.services]
enabled = ["sshd", "keepalived"]
"#;

const V1_COMMIT: &str = "7d16e836a87542f41bdce3006dc4c7c69ab8c1fa823783a52a0d84032ba456e8";

// ---- the client against the fake: the API contract ----

#[test]
fn push_depsolve_and_start_with_parent_and_url() {
    let fake = FakeWeldr::start(FakeConfig::default());
    let client = WeldrClient::new(fast_config(&fake.socket));
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();

    client.push_blueprint(&blueprint).unwrap();
    let pushed = fake.blueprint("RFE").expect("the fake has the blueprint");
    assert!(pushed.contains("version = \"0.0.1\""), "{pushed}");

    let packages = client.depsolve("RFE").unwrap();
    assert!(packages.contains(&"jq-1.0-1.el8.x86_64".to_string()), "{packages:?}");
    assert!(packages.contains(&"systemd-239-68.el8.x86_64".to_string()), "{packages:?}");
    assert!(packages.windows(2).all(|pair| pair[0] <= pair[1]), "sorted: {packages:?}");

    let request = request_for("v2", &blueprint, Some(V1_COMMIT), Some("http://127.0.0.1:8000/repo/"));
    let ostree = weldr::ostree_options(&request).unwrap();
    let uuid = client.start_compose(&request, &blueprint, &ostree).unwrap();
    let composes = fake.composes();
    assert_eq!(composes.len(), 1);
    assert_eq!(composes[0].id, uuid);
    assert_eq!(
        composes[0].ostree,
        json!({"ref": "rhel/8/x86_64/edge", "parent": V1_COMMIT, "url": "http://127.0.0.1:8000/repo/"})
    );
    let depsolve_unknown = client.depsolve("nope").unwrap_err();
    assert!(format!("{depsolve_unknown:#}").contains("UnknownBlueprint"), "{depsolve_unknown:#}");
}

#[test]
fn status_goes_waiting_running_finished_and_the_download_has_its_digest() {
    let fake = FakeWeldr::start(FakeConfig { waiting_polls: 2, running_polls: 2, ..FakeConfig::default() });
    let out = tempfile::tempdir().unwrap();
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    let composer = WeldrComposer { config: fast_config(&fake.socket) };
    let result = composer.compose(&request_for("v1", &blueprint, None, None), out.path(), &quiet()).unwrap();

    let composes = fake.composes();
    assert_eq!(composes.len(), 1);
    let mut seen = composes[0].history.clone();
    seen.dedup();
    assert_eq!(seen, ["WAITING", "RUNNING", "FINISHED"]);

    assert_eq!(result.backend_id, composes[0].id);
    assert_eq!(result.tarball, out.path().join("v1-commit.tar"));
    assert_eq!(result.tarball_sha256, edgelab::hash::digest_file(&result.tarball).unwrap());
    assert_eq!(Some(&result.commit), composes[0].commit.as_ref());
    assert_eq!(result.compose_json["ref"], "rhel/8/x86_64/edge");
    // Composer writes the distro's OS version there, not the blueprint's.
    assert_eq!(result.compose_json["ostree-version"], fake_weldr::OS_VERSION);
    // The packages are the commit's (compose/info), not the depsolve's.
    assert!(result.packages.contains(&"keepalived-1.0-1.el8.x86_64".to_string()));
    assert!(result.packages.contains(&"kernel-4.18.0-372.el8.x86_64".to_string()), "{:?}", result.packages);

    // The tarball holds a real repo whose ref is the commit.
    let unpacked = tempfile::tempdir().unwrap();
    tar::Archive::new(std::fs::File::open(&result.tarball).unwrap()).unpack(unpacked.path()).unwrap();
    assert_eq!(rev_parse(&unpacked.path().join("repo"), "rhel/8/x86_64/edge"), result.commit);
}

#[test]
fn a_failed_compose_surfaces_the_tail_of_its_log() {
    let fake = FakeWeldr::start(FakeConfig { fail_composes: true, ..FakeConfig::default() });
    let out = tempfile::tempdir().unwrap();
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    let composer = WeldrComposer { config: fast_config(&fake.socket) };
    let err = composer.compose(&request_for("v1", &blueprint, None, None), out.path(), &quiet()).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("logs/osbuild.log"), "{text}");
    assert!(text.contains("file /usr/bin/strace conflicts between attempted installs"), "{text}");
    assert!(text.contains("stage org.osbuild.rpm failed"), "{text}");
    assert!(!text.contains("installing package 0\n"), "only the tail is shown: {text}");
    assert!(!out.path().join("v1-commit.tar").exists());
}

#[test]
fn a_killed_run_is_resumed_by_adopting_its_compose() {
    let fake = FakeWeldr::start(FakeConfig { waiting_polls: 1000, ..FakeConfig::default() });
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    let state = tempfile::tempdir().unwrap();
    let request = request_for("v2", &blueprint, Some(V1_COMMIT), Some("http://127.0.0.1:8000/repo/"));

    // The first run starts the compose and then gives up waiting, as a
    // killed `xtask` would: the compose stays queued in composer.
    let mut config = fast_config(&fake.socket);
    config.state_dir = Some(state.path().to_path_buf());
    config.compose_timeout = Duration::from_millis(50);
    let first = WeldrComposer { config: config.clone() };
    let out = tempfile::tempdir().unwrap();
    let err = first.compose(&request, out.path(), &quiet()).unwrap_err();
    assert!(format!("{err:#}").contains("next run adopts it"), "{err:#}");
    drop(first);
    assert_eq!(fake.n_compose_posts(), 1);
    let uuid = fake.composes()[0].id.clone();

    // The next run finds it in the queue and adopts it: no second compose.
    fake.set_config(FakeConfig { waiting_polls: 0, running_polls: 1, ..FakeConfig::default() });
    config.compose_timeout = Duration::from_secs(30);
    let second = WeldrComposer { config };
    let out = tempfile::tempdir().unwrap();
    let result = second.compose(&request, out.path(), &quiet()).unwrap();
    assert_eq!(result.backend_id, uuid);
    assert_eq!(fake.n_compose_posts(), 1, "{:#?}", fake.requests());
    assert!(fake.requests().iter().any(|request| request == "GET /api/v1/compose/queue"));

    // A finished compose of the same version for another parent is not adopted.
    let other = request_for("v2", &blueprint, Some(&"b".repeat(64)), Some("http://127.0.0.1:8000/repo/"));
    let out = tempfile::tempdir().unwrap();
    let result = second.compose(&other, out.path(), &quiet()).unwrap();
    assert_ne!(result.backend_id, uuid);
    assert_eq!(fake.n_compose_posts(), 2);
}

#[test]
fn a_first_request_that_times_out_is_retried() {
    let fake = FakeWeldr::start(FakeConfig {
        first_response_delay: Some(Duration::from_millis(1500)),
        ..FakeConfig::default()
    });
    let mut config = fast_config(&fake.socket);
    config.request_timeout = Duration::from_millis(500);
    let out = tempfile::tempdir().unwrap();
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    let result = WeldrComposer { config }.compose(&request_for("v1", &blueprint, None, None), out.path(), &quiet());
    let result = result.unwrap();
    assert!(weldr::is_commit_id(&result.commit));
    let requests = fake.requests();
    assert_eq!(requests[0], "GET /api/v1/compose/types");
    assert_eq!(requests[1], "GET /api/v1/compose/types", "retried: {requests:#?}");
}

#[test]
fn composer_raises_the_version_of_a_blueprint_pushed_again() {
    let fake = FakeWeldr::start(FakeConfig::default());
    let client = WeldrClient::new(fast_config(&fake.socket));
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    client.push_blueprint(&blueprint).unwrap();
    client.push_blueprint(&blueprint).unwrap();
    let stored = fake.blueprint("RFE").unwrap();
    assert!(stored.contains("version = \"0.0.2\""), "{stored}");
    // A different version is stored as pushed; the same one again is
    // raised: two composes of the same request report different versions,
    // and each is still the request's.
    let composer = WeldrComposer { config: fast_config(&fake.socket) };
    let out = tempfile::tempdir().unwrap();
    let first = composer.compose(&request_for("v1", &blueprint, None, None), out.path(), &quiet()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let second = composer.compose(&request_for("v1", &blueprint, None, None), out.path(), &quiet()).unwrap();
    let composes = fake.composes();
    let version_of = |id: &str| composes.iter().find(|it| it.id == id).unwrap().version.clone();
    assert_eq!((version_of(&first.backend_id), version_of(&second.backend_id)), ("0.0.1".into(), "0.0.2".into()));
}

#[test]
fn a_version_reused_with_new_content_is_not_adopted() {
    let fake = FakeWeldr::start(FakeConfig { waiting_polls: 0, running_polls: 0, ..FakeConfig::default() });
    let state = tempfile::tempdir().unwrap();
    let mut config = fast_config(&fake.socket);
    config.state_dir = Some(state.path().to_path_buf());
    let composer = WeldrComposer { config };
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    let out = tempfile::tempdir().unwrap();
    let first = composer.compose(&request_for("v2", &blueprint, None, None), out.path(), &quiet()).unwrap();
    // The same name and version, one package more.
    let changed = BLUEPRINT
        .replace("[[packages]]\nname = \"jq\"", "[[packages]]\nname = \"strace\"\n\n[[packages]]\nname = \"jq\"");
    let changed = edgelab::blueprint::parse_blueprint("RFE.toml", &changed).unwrap();
    assert_eq!(changed.version, blueprint.version);
    let out = tempfile::tempdir().unwrap();
    let second = composer.compose(&request_for("v2", &changed, None, None), out.path(), &quiet()).unwrap();
    assert_ne!(second.backend_id, first.backend_id, "the old compose was adopted");
    assert_eq!(fake.n_compose_posts(), 2);
    assert!(second.packages.iter().any(|nevra| nevra.starts_with("strace-")), "{:?}", second.packages);
    assert!(!first.packages.iter().any(|nevra| nevra.starts_with("strace-")));
    // And the same request again is adopted from the record.
    let out = tempfile::tempdir().unwrap();
    let third = composer.compose(&request_for("v2", &changed, None, None), out.path(), &quiet()).unwrap();
    assert_eq!(third.backend_id, second.backend_id);
    assert_eq!(fake.n_compose_posts(), 2);

    // The first compose (superseded, its tarball in the store) was deleted
    // from composer; the current one is kept.
    let ids: Vec<String> = fake.composes().into_iter().map(|compose| compose.id).collect();
    assert!(!ids.contains(&first.backend_id), "{ids:?}");
    assert!(ids.contains(&second.backend_id), "{ids:?}");
    assert!(fake.requests().iter().any(|request| request.starts_with("DELETE /api/v1/compose/delete/")));

    // A compose nobody recorded is never taken for ours, even with the
    // same name, version and content.
    let unrecorded = WeldrComposer { config: fast_config(&fake.socket) };
    let out = tempfile::tempdir().unwrap();
    let fourth = unrecorded.compose(&request_for("v2", &changed, None, None), out.path(), &quiet()).unwrap();
    assert_ne!(fourth.backend_id, second.backend_id);
    assert_eq!(fake.n_compose_posts(), 3);
}

#[test]
fn a_slow_compose_post_is_watched_for_not_sent_again() {
    let fake = FakeWeldr::start(FakeConfig {
        post_delay: Some(Duration::from_millis(1500)),
        waiting_polls: 0,
        running_polls: 0,
        ..FakeConfig::default()
    });
    let state = tempfile::tempdir().unwrap();
    let mut config = fast_config(&fake.socket);
    config.state_dir = Some(state.path().to_path_buf());
    config.compose_post_timeout = Duration::from_millis(300);
    config.compose_post_grace = Duration::from_secs(10);
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    let out = tempfile::tempdir().unwrap();
    let result = WeldrComposer { config }.compose(&request_for("v1", &blueprint, None, None), out.path(), &quiet());
    let result = result.unwrap();
    assert_eq!(fake.n_compose_posts(), 1, "{:#?}", fake.requests());
    assert_eq!(result.backend_id, fake.composes()[0].id);
}

#[test]
fn a_compose_whose_answer_was_lost_is_adopted_by_the_next_run() {
    let fake = FakeWeldr::start(FakeConfig { post_delay: Some(Duration::from_millis(800)), ..FakeConfig::default() });
    let state = tempfile::tempdir().unwrap();
    let mut config = fast_config(&fake.socket);
    config.state_dir = Some(state.path().to_path_buf());
    config.compose_post_timeout = Duration::from_millis(200);
    config.compose_post_grace = Duration::ZERO;
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    let request = request_for("v1", &blueprint, None, None);
    let out = tempfile::tempdir().unwrap();
    let err = WeldrComposer { config: config.clone() }.compose(&request, out.path(), &quiet()).unwrap_err();
    assert!(format!("{err:#}").contains("the next run adopts it"), "{err:#}");
    // Composer queues it once its depsolve is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.composes().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let queued = fake.composes()[0].id.clone();
    fake.set_config(FakeConfig::default());
    let out = tempfile::tempdir().unwrap();
    let result = WeldrComposer { config }.compose(&request, out.path(), &quiet()).unwrap();
    assert_eq!(result.backend_id, queued);
    assert_eq!(fake.n_compose_posts(), 1, "{:#?}", fake.requests());
}

#[test]
fn a_composer_without_edge_commit_is_refused_before_the_push() {
    let fake =
        FakeWeldr::start(FakeConfig { types: vec![("iot-commit", true), ("qcow2", true)], ..FakeConfig::default() });
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = WeldrComposer { config: fast_config(&fake.socket) }
        .compose(&request_for("v1", &blueprint, None, None), out.path(), &quiet())
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("offers no `edge-commit`") && text.contains("iot-commit"), "{text}");
    assert_eq!(fake.requests(), ["GET /api/v1/compose/types"]);
}

// ---- bad inputs: each a clear error ----

#[test]
fn a_parent_without_url_is_refused_before_anything_is_sent() {
    let fake = FakeWeldr::start(FakeConfig::default());
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = WeldrComposer { config: fast_config(&fake.socket) }
        .compose(&request_for("v2", &blueprint, Some(V1_COMMIT), None), out.path(), &quiet())
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("image `v2` has parent commit 7d16e836a875 but no URL"), "{text}");
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());

    let by_ref = request_for("v2", &blueprint, Some("rhel/8/x86_64/edge"), None);
    let err = weldr::ostree_options(&by_ref).unwrap_err();
    assert!(format!("{err:#}").contains("has parent ref `rhel/8/x86_64/edge` but no URL"), "{err:#}");
    let ok = request_for("v2", &blueprint, Some("rhel/8/x86_64/edge"), Some("http://127.0.0.1:8000/repo/"));
    assert_eq!(weldr::ostree_options(&ok).unwrap().parent, "rhel/8/x86_64/edge");
}

#[test]
fn a_missing_socket_says_how_to_start_composer() {
    let dir = tempfile::tempdir().unwrap();
    let client = WeldrClient::new(fast_config(&dir.path().join("api.socket")));
    let err = client.status().unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("osbuild-composer is not running"), "{text}");
    assert!(text.contains("systemctl enable --now osbuild-composer.socket"), "{text}");
}

#[test]
fn permission_denied_gives_the_weldr_group_hint() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeWeldr::start(FakeConfig::default());
    // As composer's socket unit makes it: root:weldr 0660.
    std::fs::set_permissions(&fake.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&fake.socket, std::fs::Permissions::from_mode(0o660)).unwrap();
    let socket = fake.socket.clone();
    // Connect as an unprivileged user. Linux credentials are per thread and
    // the raw syscall (unlike libc's wrapper) changes only this thread's.
    let text = std::thread::spawn(move || {
        if unsafe { libc::getuid() } == 0 {
            let no_groups: [libc::gid_t; 0] = [];
            let rc = unsafe {
                [
                    libc::syscall(libc::SYS_setgroups, 0, no_groups.as_ptr()),
                    libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534),
                    libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534),
                ]
            };
            assert_eq!(rc, [0, 0, 0], "dropping to nobody:nogroup in this thread");
        } else {
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o000)).unwrap();
        }
        let err = WeldrClient::new(fast_config(&socket)).status().unwrap_err();
        format!("{err:#}")
    })
    .join()
    .unwrap();
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains("usermod -a -G weldr $USER"), "{text}");
    assert!(fake.requests().is_empty());
}

// ---- the stages, run by the real runner into a real store ----

#[test]
fn v2_composes_on_v1s_commit_and_only_v2_goes_stale_when_its_packages_change() {
    let fake = FakeWeldr::start(FakeConfig { waiting_polls: 0, running_polls: 0, ..FakeConfig::default() });
    let labdir = tempfile::tempdir().unwrap();
    let lab = test_lab(labdir.path(), BLUEPRINT, &["strace"]);
    let store = Store::open(&labdir.path().join("artifacts")).unwrap();
    let summary = up(&lab, &store, &fake.socket);
    assert!(!summary.failed(), "{}", summary.render());

    let v1 = store.last_manifest(&StageId::new(StageKind::Compose, "v1")).unwrap();
    let v2 = store.last_manifest(&StageId::new(StageKind::Compose, "v2")).unwrap();
    assert!(weldr::is_commit_id(&v1.output_digest));
    assert_eq!(v2.extra["parent"], json!(v1.output_digest));
    assert_eq!(v2.extra["parent_url"], "http://127.0.0.1:8000/repo/");
    assert_eq!(v1.extra["blueprint_version"], "0.0.1");
    assert_eq!(v2.extra["blueprint_version"], "0.0.2");
    assert_eq!(v2.extra["compose_json"]["ostree-commit"], json!(v2.output_digest));
    assert!(v2.extra["packages"].as_array().unwrap().contains(&json!("strace-1.0-1.el8.x86_64")));
    assert!(!v1.extra["packages"].as_array().unwrap().contains(&json!("strace-1.0-1.el8.x86_64")));

    // What composer was asked: v2 on v1's commit, fetched from the served repo.
    let composes = fake.composes();
    assert_eq!(composes.len(), 2);
    assert_eq!(composes[1].version, "0.0.2");
    assert!(composes[1].blueprint_toml.contains("name = \"strace\""));
    assert_eq!(composes[1].ostree["parent"], json!(v1.output_digest));
    assert_eq!(composes[1].ostree["url"], "http://127.0.0.1:8000/repo/");

    // The artifact: tarball + its extracted repo, whose commit has v1 as parent.
    let v2_out = store.artifact_out(&v2.key);
    assert!(v2_out.join("v2-commit.tar").is_file());
    assert!(v2_out.join("compose.json").is_file());
    let repo = v2_out.join("repo");
    assert_eq!(rev_parse(&repo, "rhel/8/x86_64/edge"), v2.output_digest);
    assert_eq!(rev_parse(&repo, &format!("{}^", v2.output_digest)), v1.output_digest);

    // `image info v2`: the compose.json fields and what the store knows.
    let info = edgelab::cli::image::render_info(&v2);
    let row = |field: &str| {
        let line = info.lines().find(|line| line.split("  ").next() == Some(field));
        line.unwrap_or_else(|| panic!("no {field} in\n{info}")).trim_start_matches(field).trim().to_string()
    };
    assert_eq!(row("compose.json ostree-commit"), v2.output_digest);
    assert_eq!(row("compose.json ref"), "rhel/8/x86_64/edge");
    assert_eq!(row("compose.json ostree-version"), fake_weldr::OS_VERSION);
    assert_eq!(row("parent"), v1.output_digest);
    assert_eq!(row("backend"), format!("weldr ({})", composes[1].id));

    // A second run is all cached and asks composer for nothing.
    let n_requests = fake.requests().len();
    let again = up(&lab, &store, &fake.socket);
    assert!(again.reports.iter().all(|report| report.outcome == Outcome::Cached), "{}", again.render());
    assert_eq!(fake.requests().len(), n_requests);

    // v2 gets another package: v2's compose is stale, v1's is not.
    let changed = test_lab(labdir.path(), BLUEPRINT, &["strace", "tcpdump"]);
    let plan = plan_of(&changed, &store);
    assert_eq!(plan.entry(&StageId::new(StageKind::Compose, "v1")).unwrap().status, Status::Fresh);
    let v2_entry = plan.entry(&StageId::new(StageKind::Compose, "v2")).unwrap();
    assert_eq!(v2_entry.status, Status::Stale);
    assert!(v2_entry.reasons.iter().any(|reason| reason.contains("extra-packages")), "{:?}", v2_entry.reasons);
}

#[test]
fn a_failing_compose_leaves_nothing_in_the_store() {
    let fake = FakeWeldr::start(FakeConfig {
        fail_composes: true,
        waiting_polls: 0,
        running_polls: 0,
        ..FakeConfig::default()
    });
    let labdir = tempfile::tempdir().unwrap();
    let lab = test_lab(labdir.path(), BLUEPRINT, &["strace"]);
    let store = Store::open(&labdir.path().join("artifacts")).unwrap();
    let summary = up(&lab, &store, &fake.socket);
    let v1 = outcome(&summary, "compose v1");
    assert!(
        matches!(&v1, Outcome::Failed(err) if err.contains("FAILED") && err.contains("strace conflicts")),
        "{v1:?}"
    );
    assert!(matches!(outcome(&summary, "compose v2"), Outcome::Skipped(why) if why.contains("compose v1")));
    assert_no_compose_artifacts(&store);
}

#[test]
fn composer_not_running_fails_the_stage_cleanly() {
    let labdir = tempfile::tempdir().unwrap();
    let lab = test_lab(labdir.path(), BLUEPRINT, &[]);
    let store = Store::open(&labdir.path().join("artifacts")).unwrap();
    let summary = up(&lab, &store, &labdir.path().join("no-such.socket"));
    let render = summary.render();
    assert!(render.contains("osbuild-composer is not running"), "{render}");
    assert_no_compose_artifacts(&store);
}

#[test]
fn a_malformed_blueprint_fails_at_its_line_and_column() {
    let fake = FakeWeldr::start(FakeConfig::default());
    let labdir = tempfile::tempdir().unwrap();
    let broken = BLUEPRINT.replace("version = \"0.0.1\"", "version = \"0.0.1");
    let lab = test_lab(labdir.path(), &broken, &[]);
    let store = Store::open(&labdir.path().join("artifacts")).unwrap();
    let summary = up(&lab, &store, &fake.socket);
    let first_line = match outcome(&summary, "blueprint RFE") {
        Outcome::Failed(err) => err.lines().next().unwrap_or("").to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(first_line, "stage `blueprint RFE`: guest/blueprints/RFE.toml:3:17: invalid basic string");
    assert!(store.last_manifest(&StageId::new(StageKind::Blueprint, "RFE")).is_none());
    assert_no_compose_artifacts(&store);
    assert!(fake.requests().is_empty());

    let plaintext = BLUEPRINT.replace(
        "password = \"$6$edgelab$xv/z29/M.jusV28dP6K0JGwJWukWc4HWTYlhn2qM9rBJjLtkKsocoNQJ4wqyBxKsxQ6dgsmApHHN8o/.tDa/U1\"",
        "password = \"edge\"",
    );
    let lab = test_lab(labdir.path(), &plaintext, &[]);
    let summary = up(&lab, &store, &fake.socket);
    let Outcome::Failed(err) = outcome(&summary, "blueprint RFE") else { panic!("{}", summary.render()) };
    assert!(err.contains("RFE.toml:18:12: user `core`: password is not a crypt(3) hash"), "{err}");
    assert!(err.contains("openssl passwd -6"), "{err}");
    assert_no_compose_artifacts(&store);
}

#[test]
fn a_parent_that_was_not_composed_is_a_clear_error() {
    let labdir = tempfile::tempdir().unwrap();
    let lab = test_lab(labdir.path(), BLUEPRINT, &["strace"]);
    let store = Store::open(&labdir.path().join("artifacts")).unwrap();
    let graph = test_graph(&lab);
    let stage = graph.stage(&StageId::new(StageKind::Compose, "v2")).unwrap();
    // The blueprint is built, the parent compose is not.
    let blueprint_out = tempfile::tempdir().unwrap();
    let blueprint = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    std::fs::write(blueprint_out.path().join("blueprint.json"), serde_json::to_vec(&blueprint).unwrap()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let progress = quiet();
    let ctx = stages::StageCtx {
        lab: &lab,
        stage,
        inputs: BTreeMap::from([(
            "blueprint".to_string(),
            stages::Input {
                output_digest: "sha256:0".into(),
                out: blueprint_out.path().to_path_buf(),
                extra: Value::Null,
            },
        )]),
        out: out.path().to_path_buf(),
        store: &store,
        progress: &progress,
    };
    let err = stages::compose::run(&ctx).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "image `v2`: its parent image `v1` has not been composed: run `cargo xtask image v1` first"
    );
}

#[test]
fn composed_versions_follow_the_package_changes_along_the_chain() {
    let labdir = tempfile::tempdir().unwrap();
    let mut lab = test_lab(labdir.path(), BLUEPRINT, &["strace"]);
    let base = edgelab::blueprint::parse_blueprint("RFE.toml", BLUEPRINT).unwrap();
    let version =
        |lab: &Lab, name: &str| edgelab::blueprint::composed_blueprint(&base, lab, lab.image(name).unwrap()).version;
    assert_eq!(version(&lab, "v1"), "0.0.1");
    assert_eq!(version(&lab, "v2"), "0.0.2");
    // v3 = v2's packages again: no change, no bump beyond v2's.
    let mut v3 = lab.image("v2").unwrap().clone();
    v3.name = "v3".into();
    v3.parent = Some("v2".into());
    lab.images.push(v3.clone());
    assert_eq!(version(&lab, "v3"), "0.0.2");
    // v4 adds one more: bumped again.
    let mut v4 = v3;
    v4.name = "v4".into();
    v4.parent = Some("v3".into());
    v4.extra_packages.push("tcpdump".into());
    lab.images.push(v4);
    assert_eq!(version(&lab, "v4"), "0.0.3");
    // A package the blueprint already has changes nothing.
    lab.images[0].extra_packages = vec!["jq".into()];
    assert_eq!(version(&lab, "v1"), "0.0.1");
}

// ---- helpers ----

fn fast_config(socket: &Path) -> WeldrConfig {
    WeldrConfig {
        socket: socket.to_path_buf(),
        request_timeout: Duration::from_secs(10),
        max_attempts: 4,
        retry_backoff: Duration::from_millis(20),
        poll_interval: Duration::from_millis(5),
        compose_timeout: Duration::from_secs(30),
        compose_post_timeout: Duration::from_secs(10),
        compose_post_grace: Duration::from_secs(5),
        state_dir: None,
    }
}

fn quiet() -> Progress {
    Progress::new(true)
}

fn request_for(
    image: &str,
    blueprint: &edgelab::blueprint::Blueprint,
    parent: Option<&str>,
    url: Option<&str>,
) -> ComposeRequest {
    ComposeRequest {
        image: image.into(),
        blueprint: blueprint.clone(),
        ostree_ref: "rhel/8/x86_64/edge".into(),
        parent_commit: parent.map(str::to_string),
        parent_url: url.map(str::to_string),
        parent_repo: None,
        package_map: json!([]),
    }
}

fn rev_parse(repo: &Path, rev: &str) -> String {
    Cmd::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .arg("rev-parse")
        .arg(rev)
        .run()
        .unwrap()
        .stdout
        .trim()
        .to_string()
}

/// The demo's images (v1; v2 on v1 adding `v2_packages`) in the RHEL world,
/// with the blueprint written under `dir`.
fn test_lab(dir: &Path, blueprint: &str, v2_packages: &[&str]) -> Lab {
    let blueprint_file = dir.join("guest/blueprints/RFE.toml");
    std::fs::create_dir_all(blueprint_file.parent().unwrap()).unwrap();
    std::fs::write(&blueprint_file, blueprint).unwrap();
    let mut lab = demo_lab::demo_lab();
    lab.name = "weldr-test".into();
    lab.file = dir.join("lab.kdl");
    lab.root = dir.to_path_buf();
    lab.backends = demo_lab::compose_backend(Backend::Rhel);
    lab.network.host_address = Auto::Given(lab::Ipv4Cidr { addr: "127.0.0.1".parse().unwrap(), prefix: 8 });
    lab.containers.clear();
    lab.blueprints[0].file = blueprint_file;
    lab.images[1].extra_packages = v2_packages.iter().map(|it| it.to_string()).collect();
    lab.file_server.address = "127.0.0.1".parse().unwrap();
    lab.boot_iso = None;
    lab.kickstart.template = dir.join("guest/kickstart/edge.ks.in");
    lab.kickstart.password_hash_file = None;
    lab.guests.clear();
    lab.package_map.clear();
    lab
}

/// The lab's graph, blueprint and compose stages only: the prereqs stage
/// would install host packages, which is not this test's business.
fn test_graph(lab: &Lab) -> Graph {
    let mut graph = graph::build(lab);
    graph.stages.retain(|stage| matches!(stage.id.kind, StageKind::Blueprint | StageKind::Compose));
    for stage in &mut graph.stages {
        stage.deps.remove("prereqs");
    }
    graph
}

fn facts_of(lab: &Lab, graph: &Graph, store: &Store) -> Facts {
    let _ = lab;
    let mut cache = store.load_stat_cache();
    edgelab::facts::gather(graph, store, &mut cache).unwrap().0
}

fn up(lab: &Lab, store: &Store, socket: &Path) -> Summary {
    let graph = test_graph(lab);
    let facts = facts_of(lab, &graph, store);
    let lock = store.lock(LockWait::Wait).unwrap();
    let progress = quiet();
    fast_config(socket).save_for_store(store).unwrap();
    runner::run(lab, &graph, &facts, store, &lock, &[], &progress)
}

fn plan_of(lab: &Lab, store: &Store) -> plan::Plan {
    let graph = test_graph(lab);
    let facts = facts_of(lab, &graph, store);
    plan::plan(&graph, &facts, store, &stages::capability)
}

fn outcome(summary: &Summary, stage: &str) -> Outcome {
    let report = summary.reports.iter().find(|report| report.stage.to_string() == stage);
    report.unwrap_or_else(|| panic!("no {stage} in\n{}", summary.render())).outcome.clone()
}

fn assert_no_compose_artifacts(store: &Store) {
    let composes: Vec<String> = store
        .list()
        .into_iter()
        .filter(|manifest| manifest.kind == StageKind::Compose)
        .map(|manifest| manifest.stage)
        .collect();
    assert!(composes.is_empty(), "published: {composes:?}");
    for image in ["v1", "v2"] {
        assert!(store.last_manifest(&StageId::new(StageKind::Compose, image)).is_none());
    }
    let _: PathBuf = store.root().to_path_buf();
}
