//! `--format` for ps and images: Go-template-style `{{.Field}}` placeholders, a `table` prefix
//! (a header row, columns aligned), `\t` for a tab, or `json` (one object per line).

use std::collections::BTreeMap;

use anyhow::bail;

/// One row: field name (as templates spell it) to its text.
pub(crate) type Row = BTreeMap<&'static str, String>;

/// A parsed `--format`.
pub(crate) enum Format {
    Json,
    Template { table: bool, parts: Vec<Part> },
}

pub(crate) enum Part {
    Text(String),
    Field(&'static str),
}

impl Format {
    /// Parses `spec`; `fields` are the known field names with their table headers.
    pub(crate) fn parse(
        spec: &str,
        fields: &[(&'static str, &'static str)],
    ) -> anyhow::Result<Self> {
        let spec = spec.trim_start();
        if spec == "json" || spec == "{{json .}}" {
            return Ok(Format::Json);
        }
        let (table, body) = match spec.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, spec),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find("}}") else {
                bail!("--format {spec:?}: unclosed \"{{{{\"");
            };
            let action = rest[open + 2..open + close].trim();
            let name = action.strip_prefix('.').unwrap_or("");
            let Some((field, _)) = fields.iter().find(|(f, _)| *f == name) else {
                let known: Vec<String> = fields.iter().map(|(f, _)| format!(".{f}")).collect();
                bail!(
                    "--format: template: can't evaluate {action:?}; known fields: {}",
                    known.join(" ")
                );
            };
            parts.push(Part::Field(field));
            rest = &rest[open + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Format::Template { table, parts })
    }

    /// The output for `rows`: with `table`, a header row first and tab-separated columns
    /// aligned three spaces apart.
    pub(crate) fn render(&self, rows: &[Row], fields: &[(&'static str, &'static str)]) -> String {
        match self {
            Format::Json => rows
                .iter()
                .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
                .collect(),
            Format::Template { table, parts } => {
                let line = |value: &dyn Fn(&'static str) -> String| {
                    parts
                        .iter()
                        .map(|p| match p {
                            Part::Text(t) => t.clone(),
                            Part::Field(f) => value(f),
                        })
                        .collect::<String>()
                };
                let mut lines = Vec::new();
                if *table {
                    lines.push(line(&|f| {
                        fields
                            .iter()
                            .find(|(n, _)| *n == f)
                            .map(|(_, h)| h.to_string())
                            .unwrap_or_default()
                    }));
                }
                for r in rows {
                    lines.push(line(&|f| r.get(f).cloned().unwrap_or_default()));
                }
                if *table {
                    align(&lines)
                } else {
                    lines.iter().map(|l| format!("{l}\n")).collect()
                }
            }
        }
    }
}

/// Columns split at tabs, padded to their widest cell plus three spaces (the last unpadded).
fn align(lines: &[String]) -> String {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            let w = c.chars().count();
            if widths.len() <= i {
                widths.push(w);
            } else if widths[i] < w {
                widths[i] = w;
            }
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[(&str, &str)] = &[("ID", "CONTAINER ID"), ("Names", "NAMES")];

    fn row(id: &str, name: &str) -> Row {
        [("ID", id.to_string()), ("Names", name.to_string())].into()
    }

    #[test]
    fn templates_tables_and_json() {
        let rows = [row("abc", "web"), row("d", "a-longer-name")];
        let f = Format::parse("{{.ID}}:{{ .Names }}", FIELDS).unwrap();
        assert_eq!(f.render(&rows, FIELDS), "abc:web\nd:a-longer-name\n");
        let f = Format::parse("table {{.ID}}\\t{{.Names}}", FIELDS).unwrap();
        assert_eq!(
            f.render(&rows, FIELDS),
            "CONTAINER ID   NAMES\nabc            web\nd              a-longer-name\n"
        );
        let f = Format::parse("json", FIELDS).unwrap();
        assert_eq!(
            f.render(&rows[..1], FIELDS),
            "{\"ID\":\"abc\",\"Names\":\"web\"}\n"
        );
        assert!(Format::parse("{{.Nope}}", FIELDS).is_err());
        assert!(Format::parse("{{.ID", FIELDS).is_err());
    }
}
