//! The cross checks run after the nodes are read (duplicate names, dangling
//! references, cycles, VRRP conflicts, ports, the subnet) and the name checks.

use super::*;

impl Parser<'_> {
    pub(super) fn check_duplicates(&mut self, spans: &Spans) {
        let mut seen: BTreeMap<(&str, &str), SourceSpan> = BTreeMap::new();
        for (what, name) in &spans.names {
            match seen.get(&(*what, name.value.as_str())) {
                Some(first) => {
                    let (line, _) = diag::line_column(self.text, first.offset());
                    self.report(
                        name.span,
                        format!("{what} `{}` is declared twice", display_scoped(&name.value)),
                        "declared again",
                        Some(format!("the first is on line {line}: rename or remove one of them")),
                    );
                }
                None => {
                    seen.insert((what, name.value.as_str()), name.span);
                }
            }
        }
    }

    pub(super) fn check_references(
        &mut self,
        spans: &Spans,
        containers: &[Container],
        blueprints: &[Blueprint],
        images: &[Image],
        channels: &[Channel],
    ) {
        for reference in &spans.references {
            if spans.unnamed.contains(&reference.target) {
                continue;
            }
            let (noun, declared): (&str, Vec<&str>) = match &reference.target {
                Target::Image => ("image", images.iter().map(|it| it.name.as_str()).collect()),
                Target::Channel => ("channel", channels.iter().map(|it| it.name.as_str()).collect()),
                Target::Blueprint => ("blueprint", blueprints.iter().map(|it| it.name.as_str()).collect()),
                Target::Build { container } => (
                    "build",
                    containers
                        .iter()
                        .filter(|it| &it.name == container)
                        .flat_map(|it| it.builds.iter().map(|build| build.name.as_str()))
                        .collect(),
                ),
            };
            if declared.contains(&reference.name.as_str()) {
                continue;
            }
            let help = match did_you_mean(&reference.name, &declared) {
                Some(close) => format!("did you mean `{close}`?"),
                None if declared.is_empty() => format!("declare the {noun} first"),
                None => format!("declared {noun}s: {}", declared.join(", ")),
            };
            self.report(
                reference.span,
                format!("{} `{}`, which is not declared", reference.what, reference.name),
                &format!("no {noun} `{}`", reference.name),
                Some(help),
            );
        }
    }

    /// No two channels publish the same ref: the served repo holds one
    /// commit per ref.
    pub(super) fn check_channel_refs(&mut self, spans: &Spans) {
        let mut seen: BTreeMap<&str, SourceSpan> = BTreeMap::new();
        for ostree_ref in &spans.channel_refs {
            match seen.get(ostree_ref.value.as_str()) {
                Some(first) => {
                    let (line, _) = diag::line_column(self.text, first.offset());
                    self.report(
                        ostree_ref.span,
                        format!("two channels publish the ref \"{}\"", ostree_ref.value),
                        "already a channel's ref",
                        Some(format!("the channel on line {line} has it: give each channel its own ref")),
                    );
                }
                None => {
                    seen.insert(&ostree_ref.value, ostree_ref.span);
                }
            }
        }
    }

    pub(super) fn check_image_cycles(&mut self, spans: &Spans) {
        let edges: Vec<(String, Option<Spanned<String>>)> = spans.image_parents.clone();
        self.check_cycles(&edges, "image parents", "remove one `parent=` so the chain starts at an image without one");
    }

    pub(super) fn check_build_cycles(&mut self, spans: &Spans) {
        let containers: BTreeSet<&String> = spans.build_froms.iter().map(|(container, _, _)| container).collect();
        for container in containers {
            let edges: Vec<(String, Option<Spanned<String>>)> = spans
                .build_froms
                .iter()
                .filter(|(it, _, _)| it == container)
                .map(|(_, build, from)| (build.clone(), from.clone()))
                .collect();
            let what = format!("builds of `{container}`");
            self.check_cycles(&edges, &what, "remove one `from=` so the chain starts at a build without one");
        }
    }

    /// Reports each cycle in `edges` (node -> the node it is built on) once,
    /// at the edge of its first member.
    pub(super) fn check_cycles(&mut self, edges: &[(String, Option<Spanned<String>>)], what: &str, help: &str) {
        let next = |name: &str| {
            edges.iter().find(|(it, _)| it == name).and_then(|(_, to)| to.as_ref()).map(|to| to.value.clone())
        };
        let mut reported: BTreeSet<String> = BTreeSet::new();
        for (start, edge) in edges {
            let Some(edge) = edge else { continue };
            if reported.contains(start) {
                continue;
            }
            let mut chain = vec![start.clone()];
            let mut current = edge.value.clone();
            // A cycle through `start` closes within `edges.len()` steps.
            for _ in 0..edges.len() {
                if current == *start {
                    chain.push(current.clone());
                    reported.extend(chain.iter().cloned());
                    self.report(
                        edge.span,
                        format!("{what} form a cycle: {}", chain.join(" -> ")),
                        "closes a cycle",
                        Some(help.to_string()),
                    );
                    break;
                }
                if chain.contains(&current) {
                    break;
                }
                chain.push(current.clone());
                match next(&current) {
                    Some(to) => current = to,
                    None => break,
                }
            }
        }
    }

    pub(super) fn check_guests(&mut self, spans: &Spans) {
        let mut seen = BTreeSet::new();
        for priority in &spans.guest_priorities {
            if !seen.insert(priority.value) {
                self.report(
                    priority.span,
                    format!("two guests have VRRP priority {}", priority.value),
                    "same priority as another guest",
                    Some("give every guest its own priority: the highest becomes MASTER after a failover".into()),
                );
            }
        }
        for master in spans.guest_masters.iter().skip(1) {
            self.report(
                *master,
                "more than one guest starts as VRRP MASTER".into(),
                "second MASTER",
                Some("one guest is MASTER, the others vrrp-state=\"BACKUP\"".into()),
            );
        }
        let mut seen = BTreeSet::new();
        for address in &spans.guest_addresses {
            if !seen.insert(address.value) {
                self.report(
                    address.span,
                    format!("two guests have the address {}", address.value),
                    "already taken",
                    Some("give every guest its own address, or \"auto\"".into()),
                );
            }
        }
    }

    pub(super) fn check_ports(&mut self, spans: &Spans) {
        if let (Some(registry), Some(file_server)) = (&spans.registry_port, &spans.file_server_port)
            && registry.value == file_server.value
        {
            self.report(
                file_server.span,
                format!("the file server and the registry both use port {}", registry.value),
                "port taken by the registry",
                Some("both listen on the lab host: pick another port, like port=8000".into()),
            );
        }
    }

    pub(super) fn check_simple_name(&mut self, name: &Spanned<String>, what: &str) {
        let ok = name.value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.value.starts_with(['-', '.']);
        if !ok {
            self.report(
                name.span,
                format!("{what} \"{}\" has characters edgelab cannot use in file names", name.value),
                "invalid name",
                Some("use letters, digits, '-', '_' and '.', not starting with '-' or '.'".into()),
            );
        }
    }

    pub(super) fn check_repository_name(&mut self, name: &Spanned<String>) {
        let ok = !name.value.is_empty()
            && name.value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
            && name.value.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            self.report(
                name.span,
                format!("container name \"{}\" is not a valid registry repository name", name.value),
                "invalid repository name",
                Some("use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit".into()),
            );
        }
    }

    pub(super) fn check_tag_name(&mut self, name: &Spanned<String>, what: &str) {
        let ok = name.value.len() <= 128
            && name.value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && name.value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            self.report(
                name.span,
                format!("{what} name \"{}\" is not a valid registry tag", name.value),
                "invalid tag",
                Some("use letters, digits, '-', '_' and '.' (at most 128), not starting with '-' or '.'".into()),
            );
        }
    }

    pub(super) fn check_host_name(&mut self, name: &Spanned<String>) {
        let ok = name.value.len() <= 63
            && name.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !name.value.starts_with('-')
            && !name.value.ends_with('-');
        if !ok {
            self.report(
                name.span,
                format!("guest name \"{}\" is not a valid host name", name.value),
                "invalid host name",
                Some("use letters, digits and '-' (at most 63), like \"edge-device-1\"".into()),
            );
        }
    }

    pub(super) fn check_interface_name(&mut self, name: &Spanned<String>, what: &str) {
        let ok = !name.value.is_empty()
            && name.value.len() <= 15
            && name.value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.report(
                name.span,
                format!("{what} name \"{}\" is not a valid network interface name", name.value),
                "invalid interface name",
                Some("use at most 15 letters, digits, '-', '_' or '.', like \"edgelab0\"".into()),
            );
        }
    }

    pub(super) fn check_ostree_ref(&mut self, ostree_ref: &Spanned<String>) {
        let text = &ostree_ref.value;
        let ok = !text.is_empty()
            && !text.starts_with('/')
            && !text.ends_with('/')
            && !text.contains("//")
            && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if !ok {
            self.report(
                ostree_ref.span,
                format!("\"{text}\" is not a valid OSTree ref"),
                "invalid ref",
                Some("write it like \"rhel/8/x86_64/edge\"".into()),
            );
        }
    }

    pub(super) fn check_package_name(&mut self, package: &Spanned<String>) {
        let ok = !package.value.is_empty()
            && package.value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
        if !ok {
            self.report(
                package.span,
                format!("\"{}\" is not a package name", package.value),
                "invalid package name",
                Some("one package per string: packages \"strace\" \"htop\"".into()),
            );
        }
    }

    pub(super) fn check_user_name(&mut self, user: &Spanned<String>) {
        let ok = !user.value.is_empty()
            && user.value.len() <= 32
            && user.value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
            && user.value.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
        if !ok {
            self.report(
                user.span,
                format!("\"{}\" is not a valid user name", user.value),
                "invalid user name",
                Some("use lowercase letters, digits, '-' and '_', starting with a letter, like \"core\"".into()),
            );
        }
    }
}
