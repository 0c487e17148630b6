//! A FAKE osbuild-composer, for tests only: osbuild-composer cannot run on
//! this machine (it needs RHEL/Fedora repositories and osbuild), so this
//! stands in for it. It follows the Weldr API v1 as osbuild-composer
//! implements it (the API inherited from lorax-composer), over a unix socket
//! like `/run/weldr/api.socket`. Each route, checked against composer's
//! source (osbuild-composer `internal/weldr/api.go` handlers, `json.go`
//! bodies, `internal/store/store.go`):
//!
//! | route | checked against | what the fake does |
//! |---|---|---|
//! | `GET /api/status` | `statusHandler` | the same fields |
//! | `GET /api/v1/compose/types` | `composeTypesHandler` | `{"types": [{name, enabled}]}`; the set is configurable (a Fedora composer's `iot-commit`, none enabled without a worker) |
//! | `POST /api/v1/blueprints/new` | `blueprintsNewHandler`, `store.PushBlueprint` | TOML only; **the patch version is raised when the pushed version equals the stored one** (`BumpVersion`), even for the same content |
//! | `GET /api/v1/blueprints/depsolve/NAME` | `blueprintsDepsolveHandler` | `{"blueprints": [{"blueprint", "dependencies": [{name, epoch, version, release, arch}]}], "errors": []}` |
//! | `POST /api/v1/compose` | `composeHandler` | `{"build_id", "status": true, "warnings": []}`; **depsolve and the parent lookup run inside the request** (`post_delay`), and the compose is queued even when the client has gone |
//! | `GET /api/v1/compose/status/UUID` | `composeStatusHandler` | `{"uuids": [entry]}`, entry `{id, blueprint, version, compose_type, image_size, queue_status, job_created, job_started, job_finished}` |
//! | `GET /api/v1/compose/info/UUID` | `composeInfoHandler` | `{id, config, blueprint, commit, deps: {packages}, compose_type, queue_status, image_size}`; the packages are the commit's (more than the blueprint's depsolve: the kernel and ostree come with the image type) |
//! | `GET /api/v1/compose/queue`, `/finished`, `/failed` | `composeQueueHandler`, `composeFinishedHandler`, `composeFailedHandler` | `{"new", "run"}`, `{"finished"}`, `{"failed"}` |
//! | `GET /api/v1/compose/image/UUID` | `composeImageHandler` | the tarball, `Content-Disposition: attachment; filename=UUID-commit.tar`; 400 `BuildInWrongState` before FINISHED |
//! | `GET /api/v1/compose/logs/UUID` | `composeLogsHandler` | a tar holding `logs/osbuild.log`, chunked |
//! | `DELETE /api/v1/compose/delete/UUIDS` | `composeDeleteHandler` | `{"uuids": [{uuid, status}], "errors": []}` for FINISHED or FAILED composes |
//! | errors | `statusResponseError` | `{"status": false, "errors": [{"id", "msg"}]}` with HTTP 400/404 |
//!
//! `compose.json`'s `ostree-version` is the distro's OS version (`8.6`), as
//! composer sets it for edge-commit, not the blueprint's version.
//!
//! What it does NOT do: depsolve for real (each package resolves to
//! `NAME-1.0-1.el8.x86_64`, plus a fixed base set) or fetch the parent from
//! `ostree.url` (tests stay on loopback; the parent commit id is recorded in
//! the new commit with `ostree commit --parent`). The image IS real: an
//! archive-mode OSTree repo made with the `ostree` program and a
//! `compose.json` with composer's field names, tarred as composer does.
//!
//! The commit is built in the background when a compose starts, as
//! composer's worker does. Status advances on polls of `compose/status`:
//! WAITING for `waiting_polls`, RUNNING for `running_polls` (and until the
//! commit is built), then FINISHED (or FAILED with logs when
//! `fail_composes`). `first_response_delay` holds the answer
//! to the very first request back, like composer building its metadata cache.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use edgelab::tools::Cmd;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub waiting_polls: u32,
    pub running_polls: u32,
    pub fail_composes: bool,
    pub first_response_delay: Option<Duration>,
    /// How long `POST /compose` works before it answers (depsolve, parent).
    pub post_delay: Option<Duration>,
    /// `compose/types`: name and whether it is enabled.
    pub types: Vec<(&'static str, bool)>,
}

/// The OS version composer writes as `ostree-version`.
pub const OS_VERSION: &str = "8.6";

impl Default for FakeConfig {
    fn default() -> FakeConfig {
        FakeConfig {
            waiting_polls: 1,
            running_polls: 1,
            fail_composes: false,
            first_response_delay: None,
            post_delay: None,
            types: vec![("edge-commit", true), ("edge-container", true), ("edge-installer", true), ("qcow2", true)],
        }
    }
}

pub struct FakeWeldr {
    pub socket: PathBuf,
    pub dir: PathBuf,
    state: Arc<Mutex<State>>,
    _tmp: tempfile::TempDir,
}

/// A compose as the fake keeps it.
#[derive(Debug, Clone)]
pub struct FakeCompose {
    pub id: String,
    pub blueprint: String,
    pub version: String,
    pub blueprint_toml: String,
    /// The `ostree` object of the compose request, as sent.
    pub ostree: Value,
    pub state: &'static str,
    pub polls: u32,
    /// Every status this compose was reported with, in order.
    pub history: Vec<&'static str>,
    pub created: f64,
    pub tarball: Option<PathBuf>,
    pub commit: Option<String>,
}

struct State {
    config: FakeConfig,
    dir: PathBuf,
    /// Blueprint name -> TOML as pushed.
    blueprints: BTreeMap<String, String>,
    composes: Vec<FakeCompose>,
    /// `METHOD /path` of every request, in order.
    requests: Vec<String>,
    n_compose_posts: usize,
}

struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl FakeWeldr {
    pub fn start(config: FakeConfig) -> FakeWeldr {
        let tmp = tempfile::tempdir().expect("a temp dir for the fake composer");
        let dir = tmp.path().to_path_buf();
        let socket = dir.join("api.socket");
        let listener = UnixListener::bind(&socket).expect("binding the fake composer's socket");
        let state = Arc::new(Mutex::new(State {
            config,
            dir: dir.clone(),
            blueprints: BTreeMap::new(),
            composes: Vec::new(),
            requests: Vec::new(),
            n_compose_posts: 0,
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        FakeWeldr { socket, dir, state, _tmp: tmp }
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn n_compose_posts(&self) -> usize {
        self.state.lock().unwrap().n_compose_posts
    }

    pub fn composes(&self) -> Vec<FakeCompose> {
        self.state.lock().unwrap().composes.clone()
    }

    pub fn blueprint(&self, name: &str) -> Option<String> {
        self.state.lock().unwrap().blueprints.get(name).cloned()
    }

    pub fn set_config(&self, config: FakeConfig) {
        self.state.lock().unwrap().config = config;
    }
}

fn serve(stream: UnixStream, state: &Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("cloning a unix stream"));
    let Some(request) = read_request(&mut reader) else { return };
    let delay = {
        let mut state = state.lock().unwrap();
        state.requests.push(format!("{} {}", request.method, request.path));
        if state.requests.len() == 1 { state.config.first_response_delay } else { None }
    };
    if let Some(delay) = delay {
        std::thread::sleep(delay);
    }
    let reply = route(&request, state);
    write_reply(stream, reply);
}

fn read_request(reader: &mut BufReader<UnixStream>) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let len: usize = headers.get("content-length").and_then(|len| len.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body })
}

fn write_reply(mut stream: UnixStream, reply: Reply) {
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Error",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\nConnection: close\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let mut bytes = Vec::new();
    if reply.chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        bytes.extend(head.as_bytes());
        for chunk in reply.body.chunks(1000) {
            bytes.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend(chunk);
            bytes.extend(b"\r\n");
        }
        bytes.extend(b"0\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
        bytes.extend(head.as_bytes());
        bytes.extend(&reply.body);
    }
    // The client may have given up (timeout); that is its business.
    stream.write_all(&bytes).ok();
}

fn route(request: &Request, state: &Arc<Mutex<State>>) -> Reply {
    let path = request.path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["api", "status"]) => json_reply(
            200,
            json!({"api": "1", "db_supported": true, "db_version": "0", "schema_version": "0",
                   "backend": "osbuild-composer", "build": "fake", "messages": []}),
        ),
        ("POST", ["api", "v1", "blueprints", "new"]) => push_blueprint(request, state),
        ("GET", ["api", "v1", "blueprints", "depsolve", name]) => depsolve(name, state),
        ("GET", ["api", "v1", "compose", "types"]) => {
            let types: Vec<Value> = state
                .lock()
                .unwrap()
                .config
                .types
                .iter()
                .map(|(name, enabled)| json!({"name": name, "enabled": enabled}))
                .collect();
            json_reply(200, json!({ "types": types }))
        }
        ("POST", ["api", "v1", "compose"]) => start_compose(request, state),
        ("GET", ["api", "v1", "compose", "info", uuid]) => compose_info(uuid, state),
        ("DELETE", ["api", "v1", "compose", "delete", uuids]) => delete_composes(uuids, state),
        ("GET", ["api", "v1", "compose", "status", uuid]) => compose_status(uuid, state),
        ("GET", ["api", "v1", "compose", "queue"]) => {
            let state = state.lock().unwrap();
            json_reply(200, json!({"new": entries(&state, "WAITING"), "run": entries(&state, "RUNNING")}))
        }
        ("GET", ["api", "v1", "compose", "finished"]) => {
            json_reply(200, json!({"finished": entries(&state.lock().unwrap(), "FINISHED")}))
        }
        ("GET", ["api", "v1", "compose", "failed"]) => {
            json_reply(200, json!({"failed": entries(&state.lock().unwrap(), "FAILED")}))
        }
        ("GET", ["api", "v1", "compose", "image", uuid]) => image(uuid, state),
        ("GET", ["api", "v1", "compose", "logs", uuid]) => logs(uuid, state),
        _ => error_reply(404, "HTTPError", "Not Found"),
    }
}

fn push_blueprint(request: &Request, state: &Mutex<State>) -> Reply {
    if request.headers.get("content-type").map(String::as_str) != Some("text/x-toml") {
        return error_reply(400, "BlueprintsError", "missing text/x-toml Content-Type");
    }
    let text = String::from_utf8_lossy(&request.body).into_owned();
    let value: toml::Value = match toml::from_str(&text) {
        Ok(value) => value,
        Err(err) => return error_reply(400, "BlueprintsError", &format!("400 Bad Request: {}", err.message())),
    };
    let Some(name) = value.get("name").and_then(toml::Value::as_str) else {
        return error_reply(400, "InvalidChars", "Invalid characters in API path");
    };
    let mut state = state.lock().unwrap();
    // store.PushBlueprint: the same version as the stored one is raised.
    let mut text = text;
    let stored_version = state
        .blueprints
        .get(name)
        .and_then(|stored| toml::from_str::<toml::Value>(stored).ok())
        .and_then(|stored| stored.get("version").and_then(toml::Value::as_str).map(str::to_string));
    let version = value.get("version").and_then(toml::Value::as_str).unwrap_or("").to_string();
    if let Some(stored) = stored_version
        && (version.is_empty() || version == stored)
    {
        let mut parts: Vec<u64> = stored.split('.').filter_map(|part| part.parse().ok()).collect();
        if parts.len() == 3 {
            parts[2] += 1;
            let mut bumped = value.clone();
            bumped["version"] = toml::Value::String(format!("{}.{}.{}", parts[0], parts[1], parts[2]));
            text = toml::to_string(&bumped).unwrap();
        }
    }
    state.blueprints.insert(name.to_string(), text);
    json_reply(200, json!({"status": true}))
}

fn depsolve(name: &str, state: &Mutex<State>) -> Reply {
    let state = state.lock().unwrap();
    let Some(text) = state.blueprints.get(name) else {
        return json_reply(
            200,
            json!({"blueprints": [], "errors": [{"id": "UnknownBlueprint", "msg": format!("{name}: blueprint not found")}]}),
        );
    };
    let value: toml::Value = toml::from_str(text).expect("stored blueprints parse");
    json_reply(
        200,
        json!({"blueprints": [{"blueprint": blueprint_json(&value), "dependencies": dependencies(&value)}], "errors": []}),
    )
}

fn start_compose(request: &Request, shared: &Arc<Mutex<State>>) -> Reply {
    let state = shared;
    if request.headers.get("content-type").map(String::as_str) != Some("application/json") {
        return error_reply(400, "MissingPost", "blueprint must be json");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return error_reply(404, "HTTPError", "Not Found");
    };
    // Composer depsolves and resolves the parent inside the request; the
    // compose is queued at the end whether or not the client still waits.
    let delay = state.lock().unwrap().config.post_delay;
    if let Some(delay) = delay {
        std::thread::sleep(delay);
    }
    let mut state = state.lock().unwrap();
    state.n_compose_posts += 1;
    let name = body.get("blueprint_name").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(text) = state.blueprints.get(&name).cloned() else {
        return error_reply(400, "UnknownBlueprint", &format!("Unknown blueprint name: {name}"));
    };
    let compose_type = body.get("compose_type").and_then(Value::as_str).unwrap_or("");
    if compose_type != "edge-commit" {
        return error_reply(
            400,
            "ComposeError",
            &format!("Failed to get compose type {compose_type:?}: unknown image type"),
        );
    }
    let ostree = body.get("ostree").cloned().unwrap_or(json!({}));
    let field = |name: &str| ostree.get(name).and_then(Value::as_str).unwrap_or("").to_string();
    if !field("parent").is_empty() && field("url").is_empty() {
        return error_reply(400, "OSTreeOptionsError", "ostree parent ref specified, but no URL to retrieve it");
    }
    let value: toml::Value = toml::from_str(&text).expect("stored blueprints parse");
    let version = value.get("version").and_then(toml::Value::as_str).unwrap_or("0.0.0").to_string();
    let id = new_uuid();
    let compose = FakeCompose {
        id: id.clone(),
        blueprint: name,
        version,
        blueprint_toml: text,
        ostree,
        state: "WAITING",
        polls: 0,
        history: vec![],
        created: now(),
        tarball: None,
        commit: None,
    };
    state.composes.push(compose.clone());
    // Composer builds in the background (its worker); so does the fake.
    let dir = state.dir.clone();
    let shared = Arc::clone(shared);
    std::thread::spawn(move || {
        let (tarball, commit) = build_commit(&dir, &compose);
        let mut state = shared.lock().unwrap();
        if let Some(built) = state.composes.iter_mut().find(|it| it.id == compose.id) {
            built.tarball = Some(tarball);
            built.commit = Some(commit);
        }
    });
    json_reply(200, json!({"build_id": id, "status": true, "warnings": []}))
}

fn compose_info(uuid: &str, state: &Mutex<State>) -> Reply {
    let state = state.lock().unwrap();
    let Some(compose) = state.composes.iter().find(|compose| compose.id == uuid) else {
        return error_reply(400, "UnknownUUID", &format!("{uuid} is not a valid build uuid"));
    };
    let value: toml::Value = toml::from_str(&compose.blueprint_toml).expect("stored blueprints parse");
    // The commit's packages: the depsolve of the blueprint plus what the
    // image type brings.
    let mut packages = dependencies(&value);
    for name in ["kernel", "ostree"] {
        packages.push(json!({"name": name, "epoch": 0, "version": "4.18.0", "release": "372.el8", "arch": "x86_64"}));
    }
    packages.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json_reply(
        200,
        json!({
            "id": compose.id,
            "config": "",
            "blueprint": blueprint_json(&value),
            "commit": "",
            "deps": {"packages": packages},
            "compose_type": "edge-commit",
            "queue_status": compose.state,
            "image_size": 0,
        }),
    )
}

fn delete_composes(uuids: &str, state: &Mutex<State>) -> Reply {
    let mut state = state.lock().unwrap();
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for uuid in uuids.split(',') {
        match state.composes.iter().position(|compose| compose.id == uuid) {
            Some(at) if matches!(state.composes[at].state, "FINISHED" | "FAILED") => {
                state.composes.remove(at);
                deleted.push(json!({"uuid": uuid, "status": true}));
            }
            Some(_) => errors.push(
                json!({"id": "BuildInWrongState", "msg": format!("Compose {uuid} is not in FINISHED or FAILED.")}),
            ),
            None => errors.push(json!({"id": "UnknownUUID", "msg": format!("compose {uuid} doesn't exist")})),
        }
    }
    json_reply(200, json!({"uuids": deleted, "errors": errors}))
}

fn compose_status(uuid: &str, state: &Mutex<State>) -> Reply {
    let mut state = state.lock().unwrap();
    let config = state.config.clone();
    let Some(compose) = state.composes.iter_mut().find(|compose| compose.id == uuid) else {
        return json_reply(200, json!({"uuids": []}));
    };
    compose.polls += 1;
    let next = if compose.polls <= config.waiting_polls {
        "WAITING"
    } else if compose.polls <= config.waiting_polls + config.running_polls {
        "RUNNING"
    } else if config.fail_composes {
        "FAILED"
    } else if compose.tarball.is_none() {
        // Still committing in the background.
        "RUNNING"
    } else {
        "FINISHED"
    };
    // A finished or failed compose stays so.
    if !matches!(compose.state, "FINISHED" | "FAILED") {
        compose.state = next;
    }
    compose.history.push(compose.state);
    json_reply(200, json!({"uuids": [entry(compose)]}))
}

fn image(uuid: &str, state: &Mutex<State>) -> Reply {
    let state = state.lock().unwrap();
    let Some(compose) = state.composes.iter().find(|compose| compose.id == uuid) else {
        return error_reply(400, "UnknownUUID", &format!("Compose {uuid} doesn't exist"));
    };
    let Some(tarball) = compose.tarball.as_ref().filter(|_| compose.state == "FINISHED") else {
        return error_reply(400, "BuildInWrongState", &format!("Build {uuid} is in wrong state: {}", compose.state));
    };
    Reply {
        status: 200,
        headers: vec![
            ("Content-Disposition".into(), format!("attachment; filename={uuid}-commit.tar")),
            ("Content-Type".into(), "application/x-tar".into()),
        ],
        body: std::fs::read(tarball).expect("reading the fake's tarball"),
        chunked: false,
    }
}

fn logs(uuid: &str, state: &Mutex<State>) -> Reply {
    let state = state.lock().unwrap();
    let Some(compose) = state.composes.iter().find(|compose| compose.id == uuid) else {
        return error_reply(400, "UnknownUUID", &format!("Compose {uuid} doesn't exist"));
    };
    if !matches!(compose.state, "FINISHED" | "FAILED") {
        return error_reply(400, "BuildInWrongState", &format!("Build {uuid} not in FINISHED or FAILED state."));
    }
    let mut log = String::new();
    for i in 0..40 {
        log.push_str(&format!("Pipeline os: stage org.osbuild.rpm: installing package {i}\n"));
    }
    if compose.state == "FAILED" {
        log.push_str("error: Transaction test error:\n  file /usr/bin/strace conflicts between attempted installs\n");
        log.push_str("osbuild: stage org.osbuild.rpm failed\n");
    }
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(log.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "logs/osbuild.log", log.as_bytes()).expect("building the logs tar");
    let body = builder.into_inner().expect("finishing the logs tar");
    Reply {
        status: 200,
        headers: vec![
            ("Content-Disposition".into(), format!("attachment; filename={uuid}-logs.tar")),
            ("Content-Type".into(), "application/x-tar".into()),
        ],
        body,
        chunked: true,
    }
}

/// Commits a tiny tree with the real `ostree` program and tars it as
/// composer's edge-commit image: `compose.json` + `repo/`.
fn build_commit(dir: &Path, compose: &FakeCompose) -> (PathBuf, String) {
    let work = dir.join(format!("compose-{}", compose.id));
    let tree = work.join("tree");
    let repo = work.join("repo");
    std::fs::create_dir_all(tree.join("usr/share/edgelab")).unwrap();
    std::fs::create_dir_all(tree.join("usr/etc")).unwrap();
    std::fs::write(
        tree.join("usr/etc/os-release"),
        format!("NAME=\"Fake RHEL for Edge\"\nVERSION=\"{}\"\n", compose.version),
    )
    .unwrap();
    std::fs::write(tree.join("usr/share/edgelab/blueprint.toml"), &compose.blueprint_toml).unwrap();
    let ostree_ref = compose.ostree.get("ref").and_then(Value::as_str).unwrap_or("rhel/8/x86_64/edge").to_string();
    let parent = compose.ostree.get("parent").and_then(Value::as_str).unwrap_or("");
    Cmd::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", repo.display()))
        .arg("--mode=archive")
        .run()
        .expect("ostree init");
    let mut commit = Cmd::new("ostree")
        .arg("commit")
        .arg(format!("--repo={}", repo.display()))
        .arg(format!("--branch={ostree_ref}"))
        .arg(format!("--tree=dir={}", tree.display()))
        .arg(format!("--add-metadata-string=version={OS_VERSION}"))
        .arg(format!("--subject=fake composer: {} {}", compose.blueprint, compose.version));
    if parent.len() == 64 {
        commit = commit.arg(format!("--parent={parent}"));
    }
    let commit_id = commit.run().expect("ostree commit").stdout.trim().to_string();
    let compose_json = json!({
        "ref": ostree_ref,
        "ostree-n-metadata-total": 4,
        "ostree-n-metadata-written": 4,
        "ostree-n-content-total": 2,
        "ostree-n-content-written": 2,
        "ostree-n-cache-hits": 0,
        "ostree-content-bytes-written": compose.blueprint_toml.len(),
        "ostree-commit": commit_id,
        "ostree-version": OS_VERSION,
        "ostree-timestamp": "2026-01-01T00:00:00Z",
        "rpm-ostree-inputhash": hex::encode(Sha256::digest(compose.blueprint_toml.as_bytes())),
    });
    let tarball = work.join("commit.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
    let text = serde_json::to_vec_pretty(&compose_json).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "compose.json", text.as_slice()).unwrap();
    builder.append_dir_all("repo", &repo).unwrap();
    builder.finish().unwrap();
    (tarball, commit_id)
}

fn entries(state: &State, status: &str) -> Vec<Value> {
    state.composes.iter().filter(|compose| compose.state == status).map(entry).collect()
}

fn entry(compose: &FakeCompose) -> Value {
    let mut entry = json!({
        "id": compose.id,
        "blueprint": compose.blueprint,
        "version": compose.version,
        "compose_type": "edge-commit",
        "image_size": 0,
        "queue_status": compose.state,
        "job_created": compose.created,
    });
    if compose.state != "WAITING" {
        entry["job_started"] = json!(compose.created + 1.0);
    }
    if matches!(compose.state, "FINISHED" | "FAILED") {
        entry["job_finished"] = json!(compose.created + 2.0);
    }
    entry
}

fn blueprint_json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(json!({}))
}

fn dependencies(value: &toml::Value) -> Vec<Value> {
    let mut deps = vec![
        json!({"name": "bash", "epoch": 0, "version": "4.4.20", "release": "4.el8", "arch": "x86_64"}),
        json!({"name": "rpm-ostree", "epoch": 0, "version": "2022.2", "release": "2.el8", "arch": "x86_64"}),
        json!({"name": "systemd", "epoch": 0, "version": "239", "release": "68.el8", "arch": "x86_64"}),
    ];
    for package in value.get("packages").and_then(toml::Value::as_array).into_iter().flatten() {
        if let Some(name) = package.get("name").and_then(toml::Value::as_str) {
            deps.push(json!({"name": name, "epoch": 0, "version": "1.0", "release": "1.el8", "arch": "x86_64"}));
        }
    }
    deps
}

fn json_reply(status: u16, value: Value) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())],
        body: serde_json::to_vec(&value).unwrap(),
        chunked: false,
    }
}

fn error_reply(status: u16, id: &str, msg: &str) -> Reply {
    json_reply(status, json!({"status": false, "errors": [{"id": id, "msg": msg}]}))
}

fn new_uuid() -> String {
    let hex: String = (0..32).map(|_| format!("{:x}", fastrand::u8(0..16))).collect();
    format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
