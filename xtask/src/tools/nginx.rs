//! `nginx` (Debian nginx-light), as a reference static file server for
//! `cargo xtask bench serve`: a foreground master process with a generated
//! configuration, everything it writes kept in one folder.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Child,
};

use anyhow::Context;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "nginx", debian: Some("nginx-light"), rhel: Some("nginx"), pip: None, version_args: &["-v"] }];

/// How the benchmark's nginx is set up.
#[derive(Debug, Clone)]
pub struct NginxSite {
    pub root: PathBuf,
    pub listen: SocketAddr,
    /// Holds the configuration, pid file, logs and temp folders.
    pub work_dir: PathBuf,
    pub worker_processes: u32,
}

/// The configuration: the folder served statically with sendfile, every
/// request in the access log (as the counting servers log every request).
pub fn render_config(site: &NginxSite) -> String {
    let work = site.work_dir.display();
    format!(
        "# Written by edgelab's benchmark.\n\
         daemon off;\n\
         master_process on;\n\
         # Tests run as root with files in private temp folders.\n\
         user root;\n\
         worker_processes {workers};\n\
         pid {work}/nginx.pid;\n\
         error_log {work}/error.log warn;\n\
         events {{\n\
         \x20   worker_connections 4096;\n\
         }}\n\
         http {{\n\
         \x20   default_type application/octet-stream;\n\
         \x20   sendfile on;\n\
         \x20   tcp_nopush on;\n\
         \x20   access_log {work}/access.log;\n\
         \x20   client_body_temp_path {work}/client_body;\n\
         \x20   proxy_temp_path {work}/proxy;\n\
         \x20   fastcgi_temp_path {work}/fastcgi;\n\
         \x20   uwsgi_temp_path {work}/uwsgi;\n\
         \x20   scgi_temp_path {work}/scgi;\n\
         \x20   server {{\n\
         \x20       listen {listen};\n\
         \x20       root {root};\n\
         \x20   }}\n\
         }}\n",
        workers = site.worker_processes,
        listen = site.listen,
        root = site.root.display(),
    )
}

/// Writes the configuration, checks it with `nginx -t` and starts nginx in
/// the foreground with its output in `log`.
pub fn spawn(site: &NginxSite, log: &Path) -> anyhow::Result<Child> {
    super::require("nginx")?;
    let config = site.work_dir.join("nginx.conf");
    std::fs::write(&config, render_config(site)).with_context(|| format!("writing {}", config.display()))?;
    let command = |extra: &[&str]| {
        Cmd::new("nginx").arg("-p").arg(&site.work_dir).arg("-c").arg(&config).args(extra.iter().copied())
    };
    command(&["-t", "-q"]).run().context("checking the generated nginx configuration")?;
    command(&[]).spawn_logged(log)
}
