//! composer's answers read and explained: JSON bodies with their status,
//! its error lists and package lists as one line each, and what a failure
//! to reach its socket means for the user.

use std::{io, io::Read, path::Path};

use anyhow::{Context, bail};
use serde_json::Value;

use super::http::Response;

/// What a connect failure means for the user.
pub(super) fn connect_error(socket: &Path, err: io::Error) -> anyhow::Error {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => anyhow::anyhow!(
            "osbuild-composer is not running (no answer on {}: {err}): systemctl enable --now osbuild-composer.socket",
            socket.display()
        ),
        io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "permission denied on {}: only root and the `weldr` group may use composer: \
             usermod -a -G weldr $USER (then log in again)",
            socket.display()
        ),
        _ => anyhow::anyhow!("connecting to osbuild-composer at {}: {err}", socket.display()),
    }
}

pub(super) fn read_json(mut response: Response, what: &str) -> anyhow::Result<Value> {
    let mut text = String::new();
    response.body.read_to_string(&mut text).with_context(|| format!("reading composer's answer to {what}"))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("composer's answer to {what} (HTTP {}) is not JSON: {text:.200}", response.status))?;
    if response.status != 200 {
        bail!("composer refused {what} (HTTP {}): {}", response.status, describe_reply(&value));
    }
    Ok(value)
}

pub(super) fn expect_status_true(reply: &Value, what: &str) -> anyhow::Result<()> {
    match reply.get("status").and_then(Value::as_bool) {
        Some(true) => Ok(()),
        _ => bail!("composer refused {what}: {}", describe_reply(reply)),
    }
}

/// `{"status": false, "errors": [{"id": ..., "msg": ...}]}` as a sentence.
pub(super) fn describe_reply(reply: &Value) -> String {
    match reply.get("errors").and_then(Value::as_array) {
        Some(errors) if !errors.is_empty() => describe_errors(errors),
        _ => reply.to_string(),
    }
}

pub(super) fn describe_errors(errors: &[Value]) -> String {
    errors
        .iter()
        .map(|error| {
            let id = error.get("id").and_then(Value::as_str).unwrap_or("error");
            let msg = error.get("msg").and_then(Value::as_str).unwrap_or("");
            format!("{id}: {msg}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `name-[epoch:]version-release.arch` of a depsolved package.
/// A list of package objects (depsolve's `dependencies`, compose/info's
/// `deps.packages`) as sorted NEVRAs.
pub(super) fn sorted_nevras(packages: Option<&Value>) -> Vec<String> {
    let mut nevras: Vec<String> =
        packages.and_then(Value::as_array).map(|packages| packages.iter().map(nevra).collect()).unwrap_or_default();
    nevras.sort();
    nevras
}

pub(super) fn nevra(package: &Value) -> String {
    let field = |name: &str| package.get(name).and_then(Value::as_str).unwrap_or("");
    let epoch = package.get("epoch").and_then(Value::as_u64).unwrap_or(0);
    let epoch = if epoch == 0 { String::new() } else { format!("{epoch}:") };
    format!("{}-{epoch}{}-{}.{}", field("name"), field("version"), field("release"), field("arch"))
}

pub(super) fn parent_kind(parent: &str) -> String {
    if super::is_commit_id(parent) { format!("commit {}", &parent[..12]) } else { format!("ref `{parent}`") }
}
