//! The RHEL world's composer: a client for osbuild-composer's Weldr API
//! (v1, the routes composer-cli and the web console use) over its unix
//! socket, `/run/weldr/api.socket`, through hyper's HTTP/1.1 client
//! connection (`weldr/http`: one request per connection, bodies streamed).
//!
//! A compose: check that composer offers `edge-commit`
//! (`GET /api/v1/compose/types`; Fedora calls it `iot-commit`), push the
//! blueprint (`POST /api/v1/blueprints/new`, TOML; composer raises the patch
//! version when the pushed version equals the stored one, so the version a
//! compose reports may be higher than the blueprint's), depsolve it (`GET
//! /api/v1/blueprints/depsolve/NAME`: an early, clear error for a package
//! that does not resolve), then adopt a compose only when it is provably the
//! same request, else start one (`POST /api/v1/compose`, `edge-commit` with
//! `ostree: {ref, parent, url}`), poll its status until FINISHED or FAILED
//! (bounded), download the tarball streaming with sha256 computed on the
//! way, read the commit id from its `compose.json`, and record the packages
//! the commit holds (`GET /api/v1/compose/info/UUID`'s `deps.packages`, not
//! the depsolve of the blueprint against the host's repos). On FAILED the
//! logs (`GET /api/v1/compose/logs/UUID`, a tar) are fetched and their tail
//! shown. Requests that time out (composer answers slowly while it builds its
//! metadata cache) are retried with backoff, a bounded number of times.
//!
//! Adoption (so a killed `xtask` picks its compose up instead of starting
//! another) never goes by blueprint name and version: composer's compose
//! entries carry neither the content nor the ostree options. Before the
//! POST the client records its intent (a digest of the blueprint's content
//! and the ostree options, and the time); once composer answers, the UUID.
//! A compose is adopted when its UUID is recorded for the same digest, or
//! when it appeared after an unanswered intent of the same digest and its
//! `compose/info` blueprint is the request's (the version aside). A POST is
//! never sent twice blindly: composer depsolves and looks the parent up
//! inside that request and may queue the compose after the client gave up,
//! so a POST that times out is followed by watching the queue for it.

mod http;
mod reply;

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use self::{
    http::{RequestError, Response},
    reply::{describe_errors, describe_reply, expect_status_true, parent_kind, read_json, sorted_nevras},
};
use super::{ComposeBackend, ComposeRequest, ComposeResult};
use crate::{blueprint::Blueprint, progress::Progress};

/// Where osbuild-composer's socket unit listens.
pub const DEFAULT_SOCKET: &str = "/run/weldr/api.socket";

/// How the client talks to composer; tests shorten the times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeldrConfig {
    pub socket: PathBuf,
    /// Per read or write on the socket.
    pub request_timeout: Duration,
    /// Attempts for a request that times out (the first may be slow while
    /// composer builds its metadata cache).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time.
    pub retry_backoff: Duration,
    pub poll_interval: Duration,
    /// Give up waiting for a compose after this long (it keeps running in
    /// composer; the next run adopts it).
    pub compose_timeout: Duration,
    /// How long `POST /api/v1/compose` may take: composer depsolves and
    /// fetches the parent inside the request, minutes on a cold cache.
    pub compose_post_timeout: Duration,
    /// After a POST that timed out, how long to watch the queue for the
    /// compose composer may still queue.
    pub compose_post_grace: Duration,
    /// Where the client records the composes it started (UUID, ref, parent),
    /// so adoption can tell its own composes apart. `None`: no record.
    #[serde(skip)]
    pub state_dir: Option<PathBuf>,
}

/// Composes through osbuild-composer.
#[derive(Debug, Clone)]
pub struct WeldrComposer {
    pub config: WeldrConfig,
}

/// The low-level API client.
#[derive(Debug, Clone)]
pub struct WeldrClient {
    config: WeldrConfig,
}

/// The `ostree` options of a compose request, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OstreeOptions {
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    /// A commit id (64 hex) or a ref in the repo at `url`.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub parent: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub url: String,
}

/// One compose as the queue, finished and status routes list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComposeEntry {
    pub id: String,
    pub blueprint: String,
    pub version: String,
    pub compose_type: String,
    /// WAITING, RUNNING, FINISHED or FAILED.
    pub queue_status: String,
    #[serde(default)]
    pub job_created: f64,
    #[serde(default)]
    pub job_started: Option<f64>,
    #[serde(default)]
    pub job_finished: Option<f64>,
}

/// What this client remembers about a compose it asked for: written before
/// the POST (no UUID yet: an intent), completed with the UUID composer gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StartedRecord {
    /// Empty while composer has not answered the POST.
    uuid: String,
    image: String,
    blueprint: String,
    /// `request_digest`: the blueprint's content and the ostree options.
    digest: String,
    ostree: OstreeOptions,
    /// When the POST was sent (seconds since the epoch).
    sent_unix: f64,
}

impl Default for WeldrConfig {
    fn default() -> WeldrConfig {
        WeldrConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            request_timeout: Duration::from_secs(120),
            max_attempts: 5,
            retry_backoff: Duration::from_secs(5),
            poll_interval: Duration::from_secs(10),
            compose_timeout: Duration::from_secs(3 * 3600),
            compose_post_timeout: Duration::from_secs(15 * 60),
            compose_post_grace: Duration::from_secs(5 * 60),
            state_dir: None,
        }
    }
}

/// The Weldr client's settings in a store's run state, when written: a
/// composer on another socket or with other timeouts (the tests point the
/// compose stage at their fake composer with millisecond timeouts this
/// way). Without it the stage uses `WeldrConfig::from_env`.
pub const SETTINGS_FILE: &str = "weldr/client.json";

impl WeldrConfig {
    /// The default, with the socket from `EDGELAB_WELDR_SOCKET` when set.
    pub fn from_env() -> WeldrConfig {
        let mut config = WeldrConfig::default();
        if let Some(socket) = std::env::var_os("EDGELAB_WELDR_SOCKET") {
            config.socket = PathBuf::from(socket);
        }
        config
    }

    /// What the `compose` stage uses for `store`: its settings file
    /// ([`SETTINGS_FILE`]) when there is one, else `from_env`; the
    /// composes it starts recorded in the store's run state.
    pub fn for_store(store: &crate::store::Store) -> anyhow::Result<WeldrConfig> {
        let mut config = match store.load_state(SETTINGS_FILE) {
            Some(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the Weldr client's settings, run/{SETTINGS_FILE} in the store"))?,
            None => WeldrConfig::from_env(),
        };
        config.state_dir = Some(store.run_dir("weldr")?);
        Ok(config)
    }

    /// Writes `self` as `store`'s settings file (read by `for_store`).
    pub fn save_for_store(&self, store: &crate::store::Store) -> anyhow::Result<()> {
        store.save_state(SETTINGS_FILE, &serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

impl ComposeBackend for WeldrComposer {
    fn name(&self) -> &'static str {
        "weldr"
    }

    fn compose(&self, request: &ComposeRequest, out: &Path, progress: &Progress) -> anyhow::Result<ComposeResult> {
        let ostree = ostree_options(request)?;
        let blueprint = &request.blueprint;
        let client = WeldrClient::new(self.config.clone());
        let what = format!("image `{}` (blueprint {} {})", request.image, blueprint.name, blueprint.version);

        client.check_compose_type().with_context(|| format!("{what}: asking composer for its image types"))?;
        client.push_blueprint(blueprint).with_context(|| format!("{what}: pushing the blueprint"))?;
        let depsolved = client.depsolve(&blueprint.name).with_context(|| format!("{what}: depsolving"))?;
        progress.note(&format!("{what}: {} packages after depsolve", depsolved.len()));

        let digest = request_digest(blueprint, &ostree);
        let uuid = match client
            .find_adoptable(blueprint, &digest)
            .with_context(|| format!("{what}: reading the queue"))?
        {
            Some(entry) => {
                progress
                    .note(&format!("{what}: adopting compose {} ({}) started earlier", entry.id, entry.queue_status));
                entry.id
            }
            None => {
                let uuid = client
                    .start_compose(request, blueprint, &ostree)
                    .with_context(|| format!("{what}: starting the compose"))?;
                progress.note(&format!("{what}: compose {uuid} started"));
                uuid
            }
        };
        let finished = client.wait(&uuid, progress)?;
        if finished.queue_status == "FAILED" {
            let tail =
                client.logs_tail(&uuid, 25).unwrap_or_else(|err| format!("(its logs could not be fetched: {err:#})"));
            bail!("{what}: compose {uuid} FAILED; last lines of its log:\n{tail}");
        }
        let tarball = out.join(format!("{}-commit.tar", request.image));
        let tarball_sha256 =
            client.download_image(&uuid, &tarball).with_context(|| format!("{what}: downloading compose {uuid}"))?;
        let compose_json = read_compose_json(&tarball)?;
        let commit = compose_json
            .get("ostree-commit")
            .and_then(Value::as_str)
            .filter(|commit| is_commit_id(commit))
            .with_context(|| format!("{what}: compose.json in {} has no valid `ostree-commit`", tarball.display()))?
            .to_string();
        let packages = match client.compose_packages(&uuid) {
            Ok(packages) if !packages.is_empty() => packages,
            // Composer may keep no package list for a compose.
            Ok(_) => depsolved,
            Err(err) => return Err(err.context(format!("{what}: reading compose {uuid}'s info"))),
        };
        // The tarball is in the store now: this store's older composes of
        // the image would otherwise stay in composer's storage forever.
        match client.prune_superseded(&request.image, &uuid) {
            Ok(deleted) if !deleted.is_empty() => {
                progress.note(&format!("{what}: deleted {} superseded compose(s) from composer", deleted.len()))
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("{what}: could not delete superseded composes: {err:#}"),
        }
        Ok(ComposeResult { tarball, commit, tarball_sha256, compose_json, backend_id: uuid, packages })
    }
}

/// The `ostree` options for `request`, with composer's parent rules checked
/// before anything is submitted: a parent needs a URL to fetch it from; a
/// 64-hex parent is a commit id, anything else a ref in the repo at the URL.
pub fn ostree_options(request: &ComposeRequest) -> anyhow::Result<OstreeOptions> {
    if request.ostree_ref.trim().is_empty() {
        bail!("image `{}`: the compose has no OSTree ref", request.image);
    }
    let parent = request.parent_commit.clone().unwrap_or_default();
    let url = request.parent_url.clone().unwrap_or_default();
    if !parent.is_empty() && url.is_empty() {
        bail!(
            "image `{}` has parent {} but no URL to fetch it from: composer needs `ostree.url` with a parent \
             (the lab's served repo URL; is the file server configured?)",
            request.image,
            parent_kind(&parent)
        );
    }
    let is_http = url.starts_with("http://") || url.starts_with("https://");
    if !url.is_empty() && !is_http {
        bail!("image `{}`: parent URL `{url}` is not an http(s) URL", request.image);
    }
    if url.contains("${") {
        bail!(
            "image `{}`: parent URL `{url}` still has a placeholder: set `network host-address` in lab.kdl",
            request.image
        );
    }
    Ok(OstreeOptions { ostree_ref: request.ostree_ref.clone(), parent, url })
}

/// Is `text` an OSTree commit id (64 lowercase hex)?
pub fn is_commit_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads `compose.json` out of an edge-commit tarball.
pub fn read_compose_json(tarball: &Path) -> anyhow::Result<Value> {
    let file = std::fs::File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().with_context(|| format!("reading {}", tarball.display()))? {
        let mut entry = entry.with_context(|| format!("reading {}", tarball.display()))?;
        let path = entry.path()?.into_owned();
        if path
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .eq([std::path::Component::Normal("compose.json".as_ref())])
        {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            return serde_json::from_str(&text)
                .with_context(|| format!("parsing compose.json in {}", tarball.display()));
        }
    }
    bail!("{} has no compose.json: not an edge-commit tarball", tarball.display())
}

impl WeldrClient {
    pub fn new(config: WeldrConfig) -> WeldrClient {
        WeldrClient { config }
    }

    /// `GET /api/status`: composer's API and build.
    pub fn status(&self) -> anyhow::Result<Value> {
        self.get_json("/api/status")
    }

    /// `POST /api/v1/blueprints/new` with the blueprint as TOML.
    pub fn push_blueprint(&self, blueprint: &Blueprint) -> anyhow::Result<()> {
        let body = blueprint.to_toml();
        let reply = self.send_json("POST", "/api/v1/blueprints/new", Some(("text/x-toml", body.as_bytes())))?;
        expect_status_true(&reply, "POST /api/v1/blueprints/new")
    }

    /// `GET /api/v1/blueprints/depsolve/NAME`: the resolved packages as
    /// sorted NEVRAs (`name-[epoch:]version-release.arch`).
    pub fn depsolve(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let reply = self.get_json(&format!("/api/v1/blueprints/depsolve/{name}"))?;
        if let Some(errors) = reply.get("errors").and_then(Value::as_array).filter(|errors| !errors.is_empty()) {
            bail!("composer could not depsolve blueprint `{name}`: {}", describe_errors(errors));
        }
        let entry = reply
            .get("blueprints")
            .and_then(Value::as_array)
            .and_then(|list| list.first())
            .with_context(|| format!("composer's depsolve answer has no blueprint: {reply}"))?;
        Ok(sorted_nevras(entry.get("dependencies")))
    }

    /// `GET /api/v1/compose/queue` and `/finished`: every compose that is
    /// waiting, running or finished.
    pub fn composes(&self) -> anyhow::Result<Vec<ComposeEntry>> {
        self.compose_lists(&[("queue", &["new", "run"]), ("finished", &["finished"])])
    }

    /// The entries of composer's compose lists: each `GET /api/v1/compose/ROUTE`
    /// once, its lists under the given keys.
    fn compose_lists(&self, routes: &[(&str, &[&str])]) -> anyhow::Result<Vec<ComposeEntry>> {
        let mut entries = Vec::new();
        for (route, keys) in routes {
            let reply = self.get_json(&format!("/api/v1/compose/{route}"))?;
            for list in keys.iter().filter_map(|key| reply.get(key)) {
                entries.extend(
                    serde_json::from_value::<Vec<ComposeEntry>>(list.clone())
                        .context("reading composer's compose list")?,
                );
            }
        }
        Ok(entries)
    }

    /// `GET /api/v1/compose/types`: refuses early when composer has no
    /// enabled `edge-commit` (Fedora's is `iot-commit`; no worker for the
    /// architecture shows here too).
    pub fn check_compose_type(&self) -> anyhow::Result<()> {
        let reply = self.get_json("/api/v1/compose/types")?;
        let types: Vec<(String, bool)> = reply
            .get("types")
            .and_then(Value::as_array)
            .map(|types| {
                types
                    .iter()
                    .filter_map(|it| {
                        let name = it.get("name").and_then(Value::as_str)?;
                        Some((name.to_string(), it.get("enabled").and_then(Value::as_bool).unwrap_or(false)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if types.iter().any(|(name, enabled)| name == COMPOSE_TYPE && *enabled) {
            return Ok(());
        }
        let offered: Vec<&str> = types.iter().filter(|(_, enabled)| *enabled).map(|(name, _)| name.as_str()).collect();
        let hint = if offered.contains(&"iot-commit") {
            " (this composer builds Fedora: its edge image is `iot-commit`, which edgelab does not drive)"
        } else {
            ""
        };
        bail!("composer offers no `{COMPOSE_TYPE}` image type; it offers: {}{hint}", offered.join(", "))
    }

    /// A compose that is provably this request (module docs): recorded for
    /// the same digest, or appeared after an unanswered intent of the same
    /// digest with this blueprint's content. Failed composes are not taken.
    pub fn find_adoptable(&self, blueprint: &Blueprint, digest: &str) -> anyhow::Result<Option<ComposeEntry>> {
        let records = self.load_records();
        if !records.iter().any(|record| record.digest == digest) {
            return Ok(None);
        }
        let composes = self.composes()?;
        let mut recorded: Vec<&ComposeEntry> = composes
            .iter()
            .filter(|entry| records.iter().any(|record| record.uuid == entry.id && record.digest == digest))
            .collect();
        recorded.sort_by(|a, b| a.job_created.total_cmp(&b.job_created));
        if let Some(entry) = recorded.pop() {
            return Ok(Some(entry.clone()));
        }
        let Some(intent) = records.iter().rev().find(|record| record.uuid.is_empty() && record.digest == digest) else {
            return Ok(None);
        };
        for entry in composes.iter().rev() {
            let unclaimed = !records.iter().any(|record| record.uuid == entry.id);
            let after = entry.job_created + 2.0 >= intent.sent_unix;
            if entry.blueprint == blueprint.name
                && entry.compose_type == COMPOSE_TYPE
                && unclaimed
                && after
                && self.compose_blueprint(&entry.id)?.is_some_and(|theirs| same_content(&theirs, blueprint))
            {
                self.complete_record(intent, &entry.id);
                return Ok(Some(entry.clone()));
            }
        }
        Ok(None)
    }

    /// `POST /api/v1/compose`; returns the compose UUID. The intent is
    /// recorded first; a POST that times out is never repeated: the queue
    /// is watched for the compose composer may still queue.
    pub fn start_compose(
        &self,
        request: &ComposeRequest,
        blueprint: &Blueprint,
        ostree: &OstreeOptions,
    ) -> anyhow::Result<String> {
        let mut body = json!({
            "blueprint_name": blueprint.name,
            "compose_type": COMPOSE_TYPE,
            "branch": "master",
            "ostree": ostree,
        });
        if ostree.parent.is_empty() && ostree.url.is_empty() {
            body["ostree"] = json!({ "ref": ostree.ostree_ref });
        }
        let body = serde_json::to_vec(&body)?;
        let intent = self.record_intent(request, blueprint, ostree);
        let post = self.request_once_within(
            "POST",
            "/api/v1/compose",
            Some(("application/json", &body)),
            self.config.compose_post_timeout,
        );
        let reply = match post {
            Ok(response) => read_json(response, "POST /api/v1/compose")?,
            Err(RequestError::Failed(err)) => return Err(err),
            Err(RequestError::TimedOut(why)) => {
                let started = Instant::now();
                loop {
                    if let Some(entry) = self.find_adoptable(blueprint, &intent.digest)? {
                        return Ok(entry.id);
                    }
                    if started.elapsed() >= self.config.compose_post_grace {
                        bail!(
                            "{why}, and no compose of this request appeared within {:?}; composer may still queue it \
                             (it depsolves inside the request): the next run adopts it instead of starting another",
                            self.config.compose_post_grace
                        );
                    }
                    std::thread::sleep(self.config.poll_interval);
                }
            }
        };
        if reply.get("status").and_then(Value::as_bool) != Some(true) {
            bail!("composer refused the compose: {}", describe_reply(&reply));
        }
        let uuid = reply
            .get("build_id")
            .and_then(Value::as_str)
            .with_context(|| format!("composer's compose answer has no build_id: {reply}"))?
            .to_string();
        self.complete_record(&intent, &uuid);
        Ok(uuid)
    }

    /// `DELETE /api/v1/compose/delete/UUIDS` for the composes this store
    /// recorded for `image` other than `keep` that are finished or failed
    /// (composer refuses to delete others); returns the deleted UUIDs.
    pub fn prune_superseded(&self, image: &str, keep: &str) -> anyhow::Result<Vec<String>> {
        let records = self.load_records();
        let ours: Vec<&StartedRecord> = records
            .iter()
            .filter(|record| record.image == image && !record.uuid.is_empty() && record.uuid != keep)
            .collect();
        if ours.is_empty() {
            return Ok(Vec::new());
        }
        let done = self.compose_lists(&[("finished", &["finished"]), ("failed", &["failed"])])?;
        let doomed: Vec<String> = ours
            .iter()
            .map(|record| record.uuid.clone())
            .filter(|uuid| done.iter().any(|entry| &entry.id == uuid))
            .collect();
        if doomed.is_empty() {
            return Ok(Vec::new());
        }
        let reply = self.send_json("DELETE", &format!("/api/v1/compose/delete/{}", doomed.join(",")), None)?;
        let deleted: Vec<String> = reply
            .get("uuids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|entry| entry.get("status").and_then(Value::as_bool) == Some(true))
            .filter_map(|entry| entry.get("uuid").and_then(Value::as_str).map(str::to_string))
            .collect();
        let mut records = self.load_records();
        records.retain(|record| !deleted.contains(&record.uuid));
        self.save_records(&records);
        Ok(deleted)
    }

    /// `GET /api/v1/compose/info/UUID`'s `blueprint`: what the compose was
    /// built from (`None` when composer does not know the compose).
    pub fn compose_blueprint(&self, uuid: &str) -> anyhow::Result<Option<Blueprint>> {
        let reply = self.compose_info(uuid)?;
        Ok(reply.get("blueprint").cloned().and_then(|value| serde_json::from_value(value).ok()))
    }

    /// `GET /api/v1/compose/info/UUID`'s `deps.packages`: the packages in the
    /// commit, as sorted NEVRAs.
    pub fn compose_packages(&self, uuid: &str) -> anyhow::Result<Vec<String>> {
        Ok(sorted_nevras(self.compose_info(uuid)?.pointer("/deps/packages")))
    }

    /// `GET /api/v1/compose/info/UUID`.
    fn compose_info(&self, uuid: &str) -> anyhow::Result<Value> {
        self.get_json(&format!("/api/v1/compose/info/{uuid}"))
    }

    /// `GET /api/v1/compose/status/UUID`.
    pub fn compose_status(&self, uuid: &str) -> anyhow::Result<ComposeEntry> {
        let reply = self.get_json(&format!("/api/v1/compose/status/{uuid}"))?;
        let entries: Vec<ComposeEntry> = serde_json::from_value(reply.get("uuids").cloned().unwrap_or(json!([])))
            .context("reading compose status")?;
        entries
            .into_iter()
            .find(|entry| entry.id == uuid)
            .with_context(|| format!("composer does not know compose {uuid}"))
    }

    /// Polls until the compose is FINISHED or FAILED, noting each change.
    pub fn wait(&self, uuid: &str, progress: &Progress) -> anyhow::Result<ComposeEntry> {
        let started = Instant::now();
        let mut last_status = String::new();
        let mut last_note = Instant::now();
        loop {
            let entry = self.compose_status(uuid)?;
            if entry.queue_status != last_status || last_note.elapsed() > Duration::from_secs(60) {
                progress.note(&format!("compose {uuid}: {} ({:.0?})", entry.queue_status, started.elapsed()));
                last_status = entry.queue_status.clone();
                last_note = Instant::now();
            }
            match entry.queue_status.as_str() {
                "FINISHED" | "FAILED" => return Ok(entry),
                _ => {}
            }
            if started.elapsed() > self.config.compose_timeout {
                bail!(
                    "compose {uuid} is still {} after {:.0?}; it keeps running in composer and the next run adopts it",
                    entry.queue_status,
                    self.config.compose_timeout
                );
            }
            std::thread::sleep(self.config.poll_interval);
        }
    }

    /// `GET /api/v1/compose/image/UUID` streamed to `path`; returns its sha256.
    pub fn download_image(&self, uuid: &str, path: &Path) -> anyhow::Result<String> {
        let path_str = format!("/api/v1/compose/image/{uuid}");
        let response = self.request_retrying("GET", &path_str, None)?;
        if response.status != 200 {
            let reply = read_json(response, &path_str)?;
            bail!("composer refused the download: {}", describe_reply(&reply));
        }
        let expected_len = response.header("content-length").and_then(|len| len.parse::<u64>().ok());
        let mut body = response.body;
        let mut file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n_bytes = 0u64;
        loop {
            let n = body.read(&mut buf).with_context(|| format!("reading the image of compose {uuid}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).with_context(|| format!("writing {}", path.display()))?;
            n_bytes += n as u64;
        }
        file.sync_all()?;
        if let Some(expected) = expected_len
            && expected != n_bytes
        {
            bail!("the image of compose {uuid} was cut short: {n_bytes} of {expected} bytes");
        }
        Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// `GET /api/v1/compose/logs/UUID` (a tar): the last `n_lines` lines of
    /// each log in it.
    pub fn logs_tail(&self, uuid: &str, n_lines: usize) -> anyhow::Result<String> {
        let path = format!("/api/v1/compose/logs/{uuid}");
        let response = self.request_retrying("GET", &path, None)?;
        if response.status != 200 {
            let reply = read_json(response, &path)?;
            bail!("{}", describe_reply(&reply));
        }
        let mut archive = tar::Archive::new(response.body);
        let mut out = String::new();
        for entry in archive.entries().context("reading the logs tar")? {
            let mut entry = entry.context("reading the logs tar")?;
            let name = entry.path()?.display().to_string();
            let mut text = String::new();
            entry.read_to_string(&mut text).ok();
            let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
            out.push_str(&format!("  == {name}\n"));
            for line in &lines[lines.len().saturating_sub(n_lines)..] {
                out.push_str(&format!("  {line}\n"));
            }
        }
        Ok(out)
    }

    fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        self.send_json("GET", path, None)
    }

    fn send_json(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> anyhow::Result<Value> {
        let response = self.request_retrying(method, path, body)?;
        read_json(response, &format!("{method} {path}"))
    }

    /// A request that is retried with backoff while composer does not
    /// answer in time; only for requests that are safe to repeat.
    fn request_retrying(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> anyhow::Result<Response> {
        let mut attempt = 1;
        loop {
            match self.request_once(method, path, body) {
                Ok(response) => return Ok(response),
                Err(RequestError::Failed(err)) => return Err(err),
                Err(RequestError::TimedOut(why)) if attempt < self.config.max_attempts => {
                    let wait = self.backoff(attempt);
                    tracing::warn!("{why}; composer may be building its metadata cache, retrying in {wait:?}");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(RequestError::TimedOut(why)) => {
                    bail!("composer did not answer {method} {path} after {attempt} attempts: {why}")
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.config.retry_backoff * 2u32.saturating_pow(attempt.saturating_sub(1)).min(64)
    }

    fn request_once(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<Response, RequestError> {
        self.request_once_within(method, path, body, self.config.request_timeout)
    }

    fn request_once_within(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
        within: Duration,
    ) -> Result<Response, RequestError> {
        http::request(&self.config.socket, method, path, body, within)
    }

    fn load_records(&self) -> Vec<StartedRecord> {
        let Some(dir) = &self.config.state_dir else {
            return vec![];
        };
        std::fs::read(dir.join("composes.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Records the intent to start a compose, before the POST.
    fn record_intent(&self, request: &ComposeRequest, blueprint: &Blueprint, ostree: &OstreeOptions) -> StartedRecord {
        let intent = StartedRecord {
            uuid: String::new(),
            image: request.image.clone(),
            blueprint: blueprint.name.clone(),
            digest: request_digest(blueprint, ostree),
            ostree: ostree.clone(),
            sent_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
        };
        let mut records = self.load_records();
        records.retain(|record| !(record.uuid.is_empty() && record.digest == intent.digest));
        records.push(intent.clone());
        self.save_records(&records);
        intent
    }

    /// The intent's compose is `uuid`.
    fn complete_record(&self, intent: &StartedRecord, uuid: &str) {
        let mut records = self.load_records();
        records.retain(|record| record.uuid != uuid && !(record.uuid.is_empty() && record.digest == intent.digest));
        records.push(StartedRecord { uuid: uuid.to_string(), ..intent.clone() });
        self.save_records(&records);
    }

    /// Losing a record only means a compose is started again rather than
    /// adopted, so a failure to write is a warning, not an error.
    fn save_records(&self, records: &[StartedRecord]) {
        let Some(dir) = &self.config.state_dir else {
            return;
        };
        let path = dir.join("composes.json");
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| crate::store::write_atomic(&path, &serde_json::to_vec_pretty(records).unwrap_or_default()));
        if let Err(err) = written {
            tracing::warn!("could not record composes in {}: {err}", path.display());
        }
    }
}

/// The one image type edgelab composes.
const COMPOSE_TYPE: &str = "edge-commit";

/// What makes two compose requests the same: the blueprint's content (its
/// version aside, which composer may raise) and the ostree options.
fn request_digest(blueprint: &Blueprint, ostree: &OstreeOptions) -> String {
    let mut content = blueprint.clone();
    content.version = String::new();
    let text = serde_json::to_vec(&json!({ "blueprint": content, "ostree": ostree, "type": COMPOSE_TYPE }))
        .unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(text)))
}

/// Whether composer's copy of a blueprint (`compose/info`) has `ours`'s
/// content; the version aside, an empty distro the same as none.
fn same_content(theirs: &Blueprint, ours: &Blueprint) -> bool {
    let normal = |blueprint: &Blueprint| {
        let mut blueprint = blueprint.clone();
        blueprint.version = String::new();
        blueprint.distro = blueprint.distro.filter(|distro| !distro.is_empty());
        blueprint
    };
    normal(theirs) == normal(ours)
}
