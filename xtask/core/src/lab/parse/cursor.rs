//! The cursor layer: a node's shape checked, and values read with their spans
//! from a property or a child (`string`, `integer`, `boolean`, paths).

use super::*;

impl Parser<'_> {
    /// Reports what `node` holds beyond its shape: unknown or repeated
    /// properties, extra arguments, an unexpected block, unknown children.
    pub(super) fn check_shape(&mut self, node: &KdlNode, shape: &Shape) {
        let kind = node.name().value();
        let mut seen_props = BTreeSet::new();
        let mut n_args = 0;
        for entry in node.entries() {
            match entry.name() {
                Some(key) => {
                    let key_text = key.value();
                    if !shape.props.contains(&key_text) {
                        let help = match (did_you_mean(key_text, shape.props), shape.props.is_empty()) {
                            (Some(close), _) => format!("did you mean `{close}`?"),
                            (None, true) => format!("`{kind}` takes no properties"),
                            (None, false) => format!("`{kind}` takes: {}", quoted_list(shape.props)),
                        };
                        self.report(
                            entry.span(),
                            format!("unknown property `{key_text}` on `{kind}`"),
                            "unknown property",
                            Some(help),
                        );
                    } else if !seen_props.insert(key_text) {
                        self.report(
                            entry.span(),
                            format!("property `{key_text}` is given twice on `{kind}`"),
                            "repeated",
                            Some("keep one of them".into()),
                        );
                    }
                }
                None => {
                    n_args += 1;
                    if n_args > shape.max_args {
                        let help = match shape.max_args {
                            0 => format!("`{kind}` takes no arguments; values go in properties or its block"),
                            1 => format!("`{kind}` takes one argument"),
                            n => format!("`{kind}` takes {n} arguments"),
                        };
                        self.report(
                            entry.span(),
                            format!("unexpected argument on `{kind}`"),
                            "extra argument",
                            Some(help),
                        );
                    }
                }
            }
        }
        match (node.children(), shape.children) {
            (Some(block), Some(allowed)) => self.check_block(block, allowed, shape.repeated, &format!("in `{kind}`")),
            (Some(block), None) => self.report(
                block.span(),
                format!("`{kind}` takes no block"),
                "unexpected block",
                Some("remove the { ... }; its values go in properties".into()),
            ),
            (None, _) => {}
        }
    }

    /// Reports unknown and repeated nodes in a block.
    pub(super) fn check_block(&mut self, block: &KdlDocument, allowed: &[&str], repeated: &[&str], place: &str) {
        let mut seen = BTreeSet::new();
        for node in block.nodes() {
            let name = node.name().value();
            if !allowed.contains(&name) {
                let help = match did_you_mean(name, allowed) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("expected one of: {}", quoted_list(allowed)),
                };
                self.report(node.name().span(), format!("unknown node `{name}` {place}"), "unknown node", Some(help));
            } else if !repeated.contains(&name) && !seen.insert(name) {
                self.report(
                    node.name().span(),
                    format!("`{name}` is given twice {place}"),
                    "repeated",
                    Some(format!("merge the two `{name}` nodes into one")),
                );
            }
        }
    }

    /// The node's first argument: the name of what it declares.
    pub(super) fn name_arg(&mut self, node: &KdlNode, what: &str, example: &str) -> Option<Spanned<String>> {
        let name = self.positional(node, 0, "a name", example)?;
        if name.value.trim().is_empty() {
            self.report(name.span, format!("the {what} name is empty"), "empty name", Some(format!("write {example}")));
            return None;
        }
        Some(name)
    }

    /// The string argument at `index` (counting arguments only), required.
    pub(super) fn positional(
        &mut self,
        node: &KdlNode,
        index: usize,
        what: &str,
        example: &str,
    ) -> Option<Spanned<String>> {
        let kind = node.name().value();
        let Some(entry) = node.entries().iter().filter(|entry| entry.name().is_none()).nth(index) else {
            self.report(
                node.name().span(),
                format!("`{kind}` needs {what}"),
                &format!("{} missing", what.trim_start_matches("a ").trim_start_matches("the ")),
                Some(format!("write {example}")),
            );
            return None;
        };
        self.as_string(entry, &format!("{what} of `{kind}`"), example)
    }

    /// Every string argument from `start` on.
    pub(super) fn string_args(&mut self, node: &KdlNode, start: usize, example: &str) -> Vec<Spanned<String>> {
        let kind = node.name().value().to_string();
        let entries: Vec<&KdlEntry> =
            node.entries().iter().filter(|entry| entry.name().is_none()).skip(start).collect();
        entries
            .into_iter()
            .filter_map(|entry| self.as_string(entry, &format!("an argument of `{kind}`"), example))
            .collect()
    }

    /// The entry in `slot`, reporting it missing when required. A child slot's
    /// node is checked to hold exactly one value.
    pub(super) fn find<'n>(
        &mut self,
        node: &'n KdlNode,
        slot: Slot<'_>,
        need: Need,
        example: &str,
    ) -> Option<&'n KdlEntry> {
        let kind = node.name().value();
        let found = match slot {
            Slot::Prop(key) => node.entry(key),
            Slot::Child(name) => match child(node, name) {
                Some(value_node) => {
                    self.check_shape(value_node, &VALUE);
                    let value = value_node.entry(0);
                    if value.is_none() {
                        self.report(
                            value_node.name().span(),
                            format!("`{name}` needs a value"),
                            "value missing",
                            Some(format!("write {example}")),
                        );
                        return None;
                    }
                    value
                }
                None => None,
            },
        };
        if found.is_none() && need == Need::Required {
            let (message, label) = match slot {
                Slot::Prop(key) => (format!("`{kind}` needs the property `{key}`"), format!("{key}= missing")),
                Slot::Child(name) => (format!("`{kind}` needs a `{name}` child"), format!("{name} missing")),
            };
            self.report(node.name().span(), message, &label, Some(format!("add {example}")));
        }
        found
    }

    pub(super) fn string(
        &mut self,
        node: &KdlNode,
        slot: Slot<'_>,
        need: Need,
        example: &str,
    ) -> Option<Spanned<String>> {
        let entry = self.find(node, slot, need, example)?;
        self.as_string(entry, &slot_name(slot), example)
    }

    pub(super) fn integer(
        &mut self,
        node: &KdlNode,
        slot: Slot<'_>,
        need: Need,
        example: &str,
        range: RangeInclusive<i128>,
    ) -> Option<Spanned<i128>> {
        let entry = self.find(node, slot, need, example)?;
        let name = slot_name(slot);
        let KdlValue::Integer(value) = entry.value() else {
            self.wrong_type(entry, &name, "an integer", example);
            return None;
        };
        if !range.contains(value) {
            self.report(
                entry.span(),
                format!("{name} {value} is out of range"),
                "out of range",
                Some(format!("{name} must be between {} and {}", range.start(), range.end())),
            );
            return None;
        }
        Some(Spanned { value: *value, span: entry.span() })
    }

    pub(super) fn boolean(
        &mut self,
        node: &KdlNode,
        slot: Slot<'_>,
        need: Need,
        example: &str,
    ) -> Option<Spanned<bool>> {
        let entry = self.find(node, slot, need, example)?;
        let KdlValue::Bool(value) = entry.value() else {
            self.wrong_type(entry, &slot_name(slot), "a boolean", example);
            return None;
        };
        Some(Spanned { value: *value, span: entry.span() })
    }

    pub(super) fn port(&mut self, node: &KdlNode, example: &str) -> Option<Spanned<u16>> {
        let port = self.integer(node, Slot::Prop("port"), Need::Optional, example, 1..=65535)?;
        Some(Spanned { value: port.value as u16, span: port.span })
    }

    pub(super) fn as_string(&mut self, entry: &KdlEntry, what: &str, example: &str) -> Option<Spanned<String>> {
        match entry.value() {
            KdlValue::String(text) => Some(Spanned { value: text.clone(), span: entry.span() }),
            _ => {
                self.wrong_type(entry, what, "a string", example);
                None
            }
        }
    }

    pub(super) fn wrong_type(&mut self, entry: &KdlEntry, what: &str, expected: &str, example: &str) {
        let found = value_kind(entry.value());
        self.report(
            entry.span(),
            format!("{what} must be {expected}, not {found}"),
            &found,
            Some(format!("write it like {example}")),
        );
    }

    /// The index of `value` among `choices`, or a report with a suggestion.
    pub(super) fn choice(&mut self, value: &Spanned<String>, what: &str, choices: &[&str]) -> Option<usize> {
        if let Some(index) = choices.iter().position(|choice| *choice == value.value) {
            return Some(index);
        }
        let help = match did_you_mean(&value.value, choices) {
            Some(close) => format!("did you mean \"{close}\"?"),
            None => format!(
                "expected one of: {}",
                choices.iter().map(|it| format!("\"{it}\"")).collect::<Vec<_>>().join(", ")
            ),
        };
        self.report(value.span, format!("unknown {what} \"{}\"", value.value), &format!("unknown {what}"), Some(help));
        None
    }

    /// `auto`, or a value `parse` accepts.
    pub(super) fn auto_or<T>(
        &mut self,
        value: &Spanned<String>,
        parse: impl Fn(&str) -> Result<T, String>,
        what: &str,
    ) -> Auto<T> {
        if value.value == "auto" {
            return Auto::Auto;
        }
        match self.parsed(value, parse, what) {
            Some(parsed) => Auto::Given(parsed),
            None => Auto::Auto,
        }
    }

    pub(super) fn parsed<T>(
        &mut self,
        value: &Spanned<String>,
        parse: impl Fn(&str) -> Result<T, String>,
        what: &str,
    ) -> Option<T> {
        match parse(&value.value) {
            Ok(parsed) => Some(parsed),
            Err(help) => {
                self.report(value.span, format!("invalid {what} \"{}\"", value.value), "not valid here", Some(help));
                None
            }
        }
    }

    /// A size in bytes, a whole multiple of `unit`.
    pub(super) fn size(&mut self, value: &Spanned<String>, what: &str, unit: u64, unit_name: &str) -> Option<u64> {
        let bytes = self.parsed(value, parse_size, &format!("{what} size"))?;
        if bytes == 0 || bytes % unit != 0 {
            self.report(
                value.span,
                format!("{what} size \"{}\" is not a positive whole number of {unit_name}", value.value),
                "not a whole size",
                Some(format!(
                    "write a whole number of {unit_name}, like \"{}\"",
                    if unit == GIB { "10GiB" } else { "2048MiB" }
                )),
            );
            return None;
        }
        Some(bytes)
    }

    /// `written` resolved against the lab's folder; reports it when it does not exist as `kind`.
    pub(super) fn existing_path(&mut self, written: &Spanned<String>, kind: PathKind, what: &str) -> PathBuf {
        let path = self.resolve(&written.value);
        let (is_kind, noun) = match kind {
            PathKind::File => (path.is_file(), "file"),
            PathKind::Folder => (path.is_dir(), "folder"),
        };
        if written.value.is_empty() {
            self.report(written.span, format!("{what} path is empty"), "empty path", Some(format!("name the {noun}")));
        } else if !path.exists() {
            let help = match close_sibling(&path) {
                Some(close) => format!("did you mean `{close}`? (paths are relative to the lab file's folder)"),
                None => "paths are relative to the lab file's folder; create it or fix the path".into(),
            };
            self.report(
                written.span,
                format!("{what} `{}` does not exist", written.value),
                &format!("no such {noun}"),
                Some(help),
            );
        } else if !is_kind {
            self.report(
                written.span,
                format!("{what} `{}` is not a {noun}", written.value),
                &format!("not a {noun}"),
                Some(format!("point it at a {noun}")),
            );
        }
        path
    }

    pub(super) fn resolve(&self, written: &str) -> PathBuf {
        normalize(&self.root.join(written))
    }
}
