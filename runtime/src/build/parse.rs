//! Dockerfile text → instructions: comments, line continuations, flags (`--from=`,
//! `--chown=`), JSON (exec) form, and `$VAR` / `${VAR}` / `${VAR:-default}` substitution.

use std::collections::HashMap;

use super::BuildError;

/// One instruction as written, with its line continuations joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Upper-cased keyword (FROM, RUN, …).
    pub keyword: String,
    /// `--name=value` flags before the arguments.
    pub flags: Vec<(String, String)>,
    /// The rest of the line, unparsed.
    pub args: String,
    /// The instruction as the user wrote it (for progress and errors).
    pub text: String,
    pub line: usize,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The arguments as a JSON array (exec form), if they are one.
    pub fn json_args(&self) -> Option<Vec<String>> {
        let t = self.args.trim();
        if !t.starts_with('[') {
            return None;
        }
        serde_json::from_str(t).ok()
    }
}

const KNOWN: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// Splits a Dockerfile into instructions; unknown keywords are an error naming the line.
pub fn parse(text: &str) -> Result<Vec<Instruction>, BuildError> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if pending.is_empty() {
            start = i + 1;
        }
        if let Some(body) = line.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        out.push(instruction(&std::mem::take(&mut pending), start)?);
    }
    if !pending.trim().is_empty() {
        out.push(instruction(&pending, start)?);
    }
    Ok(out)
}

fn instruction(text: &str, line: usize) -> Result<Instruction, BuildError> {
    let text = text.trim();
    let (kw, mut rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let keyword = kw.to_ascii_uppercase();
    if !KNOWN.contains(&keyword.as_str()) {
        return Err(BuildError::Parse(format!(
            "line {line}: unknown instruction: {kw}"
        )));
    }
    let mut flags = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some(f) = rest.strip_prefix("--") else {
            break;
        };
        let (word, after) = f.split_once(char::is_whitespace).unwrap_or((f, ""));
        let (k, v) = word.split_once('=').unwrap_or((word, "true"));
        flags.push((k.to_string(), v.to_string()));
        rest = after;
    }
    Ok(Instruction {
        keyword,
        flags,
        args: rest.trim().to_string(),
        text: text.to_string(),
        line,
    })
}

/// Replaces `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}` from `vars`; `\$`
/// stays a literal `$`.
pub fn substitute(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'$') {
            out.push('$');
            chars.next();
            continue;
        }
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            let mut inner = String::new();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                inner.push(c);
            }
            let value = if let Some((name, def)) = inner.split_once(":-") {
                vars.get(name)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .unwrap_or_else(|| def.to_string())
            } else if let Some((name, alt)) = inner.split_once(":+") {
                vars.get(name)
                    .filter(|v| !v.is_empty())
                    .map(|_| alt.to_string())
                    .unwrap_or_default()
            } else {
                vars.get(&inner).cloned().unwrap_or_default()
            };
            out.push_str(&value);
        } else {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                out.push('$');
            } else {
                out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
            }
        }
    }
    out
}

/// Splits `KEY=VALUE KEY2="VALUE 2"` (or the old `KEY VALUE` form) into pairs.
pub fn key_values(args: &str) -> Vec<(String, String)> {
    let words = shell_words(args);
    if words.len() >= 2 && !words[0].contains('=') {
        return vec![(words[0].clone(), words[1..].join(" "))];
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (w, String::new()),
        })
        .collect()
}

/// Whitespace-separated words, with double and single quotes grouping.
pub fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_comments_flags_and_unknowns() {
        let df = "# c\nFROM scratch AS base\nCOPY --chown=1:2 a \\\n  b /x/\n\nenv A=1\n";
        let v = parse(df).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].keyword, "COPY");
        assert_eq!(v[1].flag("chown"), Some("1:2"));
        assert_eq!(shell_words(&v[1].args), ["a", "b", "/x/"]);
        assert_eq!(v[1].line, 3);
        assert_eq!(v[2].keyword, "ENV");
        let e = parse("FROM x\nFROB y\n").unwrap_err().to_string();
        assert!(e.contains("line 2: unknown instruction: FROB"), "{e}");
    }

    #[test]
    fn substitution_and_key_values() {
        let vars = HashMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(
            substitute("$A ${A} ${B:-d} ${A:+y} \\$A", &vars),
            "1 1 d y $A"
        );
        assert_eq!(
            key_values("A=1 B=\"two words\""),
            [("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(key_values("A one two"), [("A".into(), "one two".into())]);
    }
}
