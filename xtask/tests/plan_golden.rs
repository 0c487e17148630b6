//! The pure core end to end: the demo lab parsed, turned into a graph and
//! planned against an in-memory store with fixed facts. Snapshots of the plan
//! and the graph (`UPDATE_EXPECT=1` refreshes them), and the rule that
//! changing one input makes exactly the stages downstream of it stale.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use edgelab::{
    graph::{self, Graph, StageId, StageKind},
    key::{Facts, Key, Preimage},
    lab::{Lab, parse_lab},
    plan::{ArtifactInfo, Plan, Status, StoreView, plan},
};
use expect_test::{expect, expect_file};
use sha2::{Digest as _, Sha256};

fn labs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/labs")
}

fn demo_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab.kdl");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// The demo lab with `edit` applied to its text, parsed as if it lived in
/// `test_data/labs/`, its backends resolved for the RHEL or the local world.
fn lab(text: &str, rhel_world: bool) -> Lab {
    match parse_lab(&labs_dir().join("lab.kdl"), text) {
        Ok(lab) => graph::resolve_backends(&lab, rhel_world),
        Err(err) => panic!("the lab does not parse:\n{}", err.to_plain()),
    }
}

fn edited(from: &str, to: &str) -> String {
    let text = demo_text();
    assert!(text.contains(from), "the demo lab no longer contains {from:?}");
    text.replacen(from, to, 1)
}

fn sha256(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// Fixed facts: each file's digest derives from its path inside test_data,
/// each tool is version 1.0.
fn facts(graph: &Graph) -> Facts {
    let mut facts = Facts::default();
    for stage in &graph.stages {
        for path in stage.files.values() {
            let relative = path.strip_prefix(labs_dir()).unwrap_or(path);
            facts.file_digests.insert(path.clone(), sha256(&relative.display().to_string()));
        }
        for tool in &stage.tools {
            facts.tool_ids.insert(tool.to_string(), format!("{tool} 1.0"));
        }
    }
    facts
}

/// The store as the plan sees it, in memory.
#[derive(Default)]
struct FakeStore {
    artifacts: RefCell<BTreeMap<Key, ArtifactInfo>>,
    last: RefCell<BTreeMap<StageId, ArtifactInfo>>,
}

impl StoreView for FakeStore {
    fn artifact(&self, key: &Key) -> Option<ArtifactInfo> {
        self.artifacts.borrow().get(key).cloned()
    }
    fn last(&self, stage: &StageId) -> Option<ArtifactInfo> {
        self.last.borrow().get(stage).cloned()
    }
}

impl FakeStore {
    fn publish(&self, stage: &StageId, preimage: Preimage, output_digest: String) {
        let info = ArtifactInfo { key: preimage.key(), output_digest, preimage };
        self.artifacts.borrow_mut().insert(info.key.clone(), info.clone());
        self.last.borrow_mut().insert(stage.clone(), info);
    }
}

/// Builds every stage that is not in the store, in dependency order, as the
/// runner would; a stage's output digest derives from its key unless
/// `same_output` gives one (a rebuild that produced the same thing).
fn build_all(graph: &Graph, facts: &Facts, store: &FakeStore, same_output: &BTreeMap<StageId, String>) {
    let mut outputs: BTreeMap<StageId, String> = BTreeMap::new();
    for stage in &graph.stages {
        let inputs = stage.deps.iter().map(|(role, dep)| (role.clone(), outputs[dep].clone())).collect();
        let preimage = Preimage::of(stage, facts, inputs);
        let key = preimage.key();
        let output = match store.artifact(&key) {
            Some(artifact) => artifact.output_digest,
            None => {
                let output = same_output.get(&stage.id).cloned().unwrap_or_else(|| sha256(&format!("output {key}")));
                store.publish(&stage.id, preimage, output.clone());
                output
            }
        };
        outputs.insert(stage.id.clone(), output);
    }
}

fn plan_of(graph: &Graph, facts: &Facts, store: &FakeStore) -> Plan {
    plan(graph, facts, store, &|_| Ok(()))
}

fn not_fresh(plan: &Plan) -> Vec<String> {
    plan.entries.iter().filter(|entry| entry.status != Status::Fresh).map(|entry| entry.stage.clone()).collect()
}

fn keys(plan: &Plan) -> BTreeMap<String, Option<Key>> {
    plan.entries.iter().map(|entry| (entry.stage.clone(), entry.key.clone())).collect()
}

/// The demo lab built completely, and the store it was built into.
fn built_demo(rhel_world: bool) -> (Graph, Facts, FakeStore) {
    let graph = graph::build(&lab(&demo_text(), rhel_world));
    let facts = facts(&graph);
    let store = FakeStore::default();
    build_all(&graph, &facts, &store, &BTreeMap::new());
    assert_eq!(not_fresh(&plan_of(&graph, &facts, &store)), Vec::<String>::new());
    (graph, facts, store)
}

/// Replans the built demo after editing its text; returns the stages that are not fresh.
#[track_caller]
fn stale_after_edit(rhel_world: bool, from: &str, to: &str) -> (Graph, Vec<String>) {
    let (_, _, store) = built_demo(rhel_world);
    let graph = graph::build(&lab(&edited(from, to), rhel_world));
    let plan = plan_of(&graph, &facts(&graph), &store);
    (graph, not_fresh(&plan))
}

fn stage(text: &str) -> StageId {
    StageId::parse(text).expect("a stage id")
}

#[test]
fn demo_plan_nothing_built() {
    for (rhel_world, file) in [(false, "demo.plan"), (true, "demo-rhel.plan")] {
        let graph = graph::build(&lab(&demo_text(), rhel_world));
        let plan = plan_of(&graph, &facts(&graph), &FakeStore::default());
        expect_file![labs_dir().join(file)].assert_eq(&plan.render(true));
    }
}

#[test]
fn demo_graph_dot() {
    let graph = graph::build(&lab(&demo_text(), false));
    expect_file![labs_dir().join("demo.dot")].assert_eq(&graph.to_dot());
}

#[test]
fn v2_packages_rerun_only_v2_and_what_follows() {
    let (graph, stale) = stale_after_edit(false, "packages \"strace\"", "packages \"strace\" \"htop\"");
    expect![[r#"
        [
            "compose v2",
            "repo served",
            "publish served",
            "install edge-device-1",
            "install edge-device-2",
        ]
    "#]]
    .assert_debug_eq(&stale);
    let downstream: Vec<String> = graph.downstream_of(&stage("compose v2")).iter().map(|id| id.to_string()).collect();
    let mut sorted_stale = stale.clone();
    sorted_stale.sort();
    let mut sorted_downstream = downstream;
    sorted_downstream.sort();
    assert_eq!(sorted_stale, sorted_downstream);
}

#[test]
fn blueprint_change_reruns_both_composes() {
    let (graph, mut facts, store) = built_demo(false);
    let blueprint_file = labs_dir().join("guest/blueprints/RFE.toml");
    let old_digest = facts.file_digests[&blueprint_file].clone();
    let new_digest = sha256("RFE.toml with one more package");
    facts.file_digests.insert(blueprint_file, new_digest.clone());

    let plan = plan_of(&graph, &facts, &store);
    let stale = not_fresh(&plan);
    expect![[r#"
        [
            "blueprint RFE",
            "compose v1",
            "compose v2",
            "repo served",
            "publish served",
            "install edge-device-1",
            "install edge-device-2",
        ]
    "#]]
    .assert_debug_eq(&stale);
    let blueprint = plan.entry(&stage("blueprint RFE")).expect("blueprint RFE is planned");
    let short = edgelab::key::short_digest;
    assert_eq!(
        blueprint.reasons,
        vec![format!("blueprint RFE.toml changed ({} -> {})", short(&old_digest), short(&new_digest))]
    );
    let reasons = |plan: &Plan, id: &str| plan.entry(&stage(id)).expect("the stage is planned").reasons.clone();
    // The root cause is repeated at every stage it reaches.
    let cause = format!("blueprint RFE.toml changed ({} -> {})", short(&old_digest), short(&new_digest));
    assert_eq!(reasons(&plan, "compose v1"), [format!("runs after blueprint RFE: {cause}")]);
    assert_eq!(
        reasons(&plan, "compose v2"),
        [format!("runs after blueprint RFE: {cause}"), "runs after compose v1".into()]
    );

    // Once the blueprint stage has run, compose v1 says which input changed.
    build_blueprint_only(&graph, &facts, &store);
    let plan = plan_of(&graph, &facts, &store);
    let v1_reasons = reasons(&plan, "compose v1");
    assert!(
        v1_reasons.len() == 1 && v1_reasons[0].starts_with("input blueprint changed (sha256:"),
        "compose v1: {v1_reasons:?}"
    );
    assert_eq!(reasons(&plan, "compose v2"), [format!("runs after compose v1: {}", v1_reasons[0])]);
}

fn build_blueprint_only(graph: &Graph, facts: &Facts, store: &FakeStore) {
    let blueprint = graph.stage(&stage("blueprint RFE")).expect("a blueprint stage");
    let preimage = Preimage::of(blueprint, facts, BTreeMap::new());
    let output = sha256(&format!("output {}", preimage.key()));
    store.publish(&blueprint.id, preimage, output);
}

#[test]
fn guest_priority_reruns_only_that_guest() {
    let (_, stale) = stale_after_edit(false, "priority=254", "priority=253");
    assert_eq!(stale, ["kickstart edge-device-2", "install edge-device-2"]);
    let (_, stale) = stale_after_edit(true, "priority=254", "priority=253");
    assert_eq!(stale, ["kickstart edge-device-2", "iso edge-device-2"]);
}

#[test]
fn rebuild_with_same_output_leaves_downstream_keys_alone() {
    let (graph, mut facts, store) = built_demo(false);
    let before = keys(&plan_of(&graph, &facts, &store));
    let container = stage("container httpd-v1");
    let old_output = plan_of(&graph, &facts, &store).entry(&container).and_then(|entry| entry.output.clone());

    // A comment changes in the v1 context: the build reruns ...
    let context = labs_dir().join("guest/app/v1");
    facts.file_digests.insert(context, sha256("context with a new comment"));
    let stale = not_fresh(&plan_of(&graph, &facts, &store));
    assert_eq!(stale[0], "container httpd-v1");
    assert!(stale.contains(&"push httpd-v1".to_string()) && stale.contains(&"container httpd-v2".to_string()));

    // ... and produces the same image: nothing downstream has a new key.
    let same_output = BTreeMap::from([(container.clone(), old_output.expect("v1 was built"))]);
    build_all(&graph, &facts, &store, &same_output);
    let after_plan = plan_of(&graph, &facts, &store);
    assert_eq!(not_fresh(&after_plan), Vec::<String>::new());
    let after = keys(&after_plan);
    let changed: Vec<&String> = before.keys().filter(|name| before[*name] != after[*name]).collect();
    assert_eq!(changed, ["container httpd-v1"]);
    assert_eq!(graph.stages.iter().filter(|it| it.id.kind == StageKind::Push).count(), 2);
}

/// `image promote v2` is run state the facts carry: the publish stage (the
/// channel's ref) and the installs that take its commit run, nothing before
/// them; the plan says why; promoting back finds the first build again.
#[test]
fn a_channel_promotion_reruns_the_publish_and_the_installs() {
    let (graph, mut facts, store) = built_demo(false);
    let unpromoted = keys(&plan_of(&graph, &facts, &store));
    facts.state.insert(graph::channel_state("edge"), "v2".into());
    let plan = plan_of(&graph, &facts, &store);
    expect![[r#"
        [
            "publish served",
            "install edge-device-1",
            "install edge-device-2",
        ]
    "#]]
    .assert_debug_eq(&not_fresh(&plan));
    let publish = plan.entries.iter().find(|entry| entry.stage == "publish served").unwrap();
    assert_eq!(publish.reasons, vec!["channel edge promoted to v2".to_string()]);

    build_all(&graph, &facts, &store, &BTreeMap::new());
    facts.state.clear();
    let plan = plan_of(&graph, &facts, &store);
    assert_eq!(not_fresh(&plan), Vec::<String>::new(), "promoting back reuses lab.kdl's build");
    assert_eq!(keys(&plan), unpromoted);
}

#[test]
fn the_upgrade_graph_rebuilds_only_the_repo_and_what_follows() {
    // `lab watch` builds a served repo without the installs' from-scratch
    // delta first: another artifact of the repo stage, the composes shared.
    let (graph, facts, store) = built_demo(false);
    let fast = graph.clone().without_install_deltas();
    let stale = not_fresh(&plan_of(&fast, &facts, &store));
    expect![[r#"
        [
            "repo served",
            "publish served",
            "install edge-device-1",
            "install edge-device-2",
        ]
    "#]]
    .assert_debug_eq(&stale);
    let repo = stage("repo served");
    assert_ne!(
        keys(&plan_of(&fast, &facts, &store))["repo served"],
        keys(&plan_of(&graph, &facts, &store))["repo served"]
    );
    assert_eq!(fast.stage(&repo).unwrap().params["installed"], serde_json::json!([]));
    assert_eq!(graph.stage(&repo).unwrap().params["installed"], serde_json::json!(["v1"]));
    let publish = stage("publish served");
    assert_eq!(fast.stage(&publish).unwrap().params["install-deltas"], serde_json::json!(false));
    assert!(!graph.stage(&publish).unwrap().params.contains_key("install-deltas"));
}
