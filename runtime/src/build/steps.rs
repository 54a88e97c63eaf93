//! What each instruction does to a stage's config and layers.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::context::{self, Context, LayerWriter};
use super::parse::{self, Instruction};
use super::{BuildError, BuildOptions, Layer, RunStep, State, StepRunner};
use crate::image::oci::Descriptor;
use crate::image::{ImageStore, chain_ids, oci_arch};

pub(super) struct StageRun<'a> {
    store: &'a ImageStore,
    ctx: &'a Context,
    opts: &'a BuildOptions,
    global: &'a HashMap<String, String>,
    done: &'a [(Option<String>, State)],
    pub state: State,
    args: HashMap<String, String>,
    shell: Vec<String>,
    runner: Option<&'a dyn StepRunner>,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

impl<'a> StageRun<'a> {
    pub fn new(
        store: &'a ImageStore,
        ctx: &'a Context,
        opts: &'a BuildOptions,
        global: &'a HashMap<String, String>,
        done: &'a [(Option<String>, State)],
        runner: Option<&'a dyn StepRunner>,
    ) -> Self {
        StageRun {
            store,
            ctx,
            opts,
            global,
            done,
            state: State {
                config: Value::Null,
                layers: vec![],
            },
            args: HashMap::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            runner,
        }
    }

    /// ENV and ARG values visible to substitution.
    fn vars(&self) -> HashMap<String, String> {
        let mut v = self.args.clone();
        for e in self.state.config["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some((k, val)) = e.as_str().and_then(|s| s.split_once('=')) {
                v.insert(k.into(), val.into());
            }
        }
        v
    }

    pub async fn from(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let words = parse::shell_words(&parse::substitute(&ins.args, self.global));
        let image = words.first().cloned().unwrap_or_default();
        if let Some((_, st)) = self.done.iter().find(|(n, _)| n.as_deref() == Some(&image)) {
            self.state = st.clone();
            return Ok(());
        }
        if image == "scratch" {
            self.state.config = json!({
                "architecture": oci_arch(), "os": "linux", "config": {},
                "rootfs": {"type": "layers", "diff_ids": []}, "history": []
            });
            return Ok(());
        }
        let rec = match self.store.resolve(&image)? {
            Some(r) => r,
            None => self.store.pull(&image, super::no_creds()).await?,
        };
        let bytes =
            std::fs::read(self.store.blob_path(&rec.id)).map_err(io("read the base config"))?;
        let config: Value = serde_json::from_slice(&bytes)
            .map_err(|e| BuildError::Parse(format!("base image config: {e}")))?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(String::from))
            .collect();
        self.state.layers = rec
            .layer_digests
            .iter()
            .zip(diff_ids)
            .map(|(d, diff_id)| Layer {
                digest: d.clone(),
                diff_id,
                size: std::fs::metadata(self.store.blob_path(d)).map_or(0, |m| m.len()),
            })
            .collect();
        self.state.config = config;
        Ok(())
    }

    pub fn cache_key(&self, ins: &Instruction) -> Result<String, BuildError> {
        let mut h = Sha256::new();
        h.update(self.state.key());
        h.update(parse::substitute(&ins.text, &self.vars()));
        if matches!(ins.keyword.as_str(), "COPY" | "ADD") && ins.flag("from").is_none() {
            let words = parse::shell_words(&parse::substitute(&ins.args, &self.vars()));
            let mut rels = Vec::new();
            for src in &words[..words.len().saturating_sub(1)] {
                rels.extend(self.ctx.sources(src)?);
            }
            h.update(context::content_hash(self.ctx, &rels).map_err(io("hash the COPY sources"))?);
        }
        if ins.keyword == "RUN" {
            // The ARGs in scope are RUN's environment.
            let mut args: Vec<_> = self.args.iter().collect();
            args.sort();
            h.update(format!("{args:?}"));
        }
        if ins.keyword == "ARG" {
            h.update(format!(
                "{:?}",
                self.opts
                    .build_args
                    .get(ins.args.split('=').next().unwrap_or(""))
            ));
        }
        Ok(hex::encode(h.finalize()))
    }

    /// ARG values live outside the config: a cached ARG step still defines them.
    pub fn replay_vars(&mut self, ins: &Instruction) {
        if ins.keyword == "ARG" {
            self.arg(ins);
        }
    }

    fn arg(&mut self, ins: &Instruction) {
        let (k, v) = ins.args.split_once('=').unwrap_or((&ins.args, ""));
        let k = k.trim().to_string();
        let v = self
            .opts
            .build_args
            .get(&k)
            .or(self.global.get(&k))
            .cloned()
            .unwrap_or_else(|| v.to_string());
        self.args.insert(k, v);
    }

    fn command(&self, args: &str, ins: &Instruction) -> Vec<String> {
        ins.json_args().unwrap_or_else(|| {
            let mut v = self.shell.clone();
            v.push(args.to_string());
            v
        })
    }

    pub async fn apply(
        &mut self,
        ins: &Instruction,
        output: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), BuildError> {
        // The shell expands RUN's, CMD's and ENTRYPOINT's variables when the command runs,
        // not the builder (as Docker's builder does).
        let args = if matches!(
            ins.keyword.as_str(),
            "RUN" | "CMD" | "ENTRYPOINT" | "SHELL" | "HEALTHCHECK"
        ) {
            ins.args.clone()
        } else {
            parse::substitute(&ins.args, &self.vars())
        };
        let command = self.command(&args, ins);
        let cfg = &mut self.state.config["config"];
        if cfg.is_null() {
            *cfg = json!({});
        }
        match ins.keyword.as_str() {
            "ENV" => {
                let mut env: Vec<String> = cfg["Env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str().map(String::from))
                    .collect();
                for (k, v) in parse::key_values(&args) {
                    env.retain(|e| e.split('=').next() != Some(&k));
                    env.push(format!("{k}={v}"));
                }
                cfg["Env"] = json!(env);
            }
            "ARG" => self.arg(ins),
            "LABEL" => {
                for (k, v) in parse::key_values(&args) {
                    cfg["Labels"][k] = json!(v);
                }
            }
            "MAINTAINER" => self.state.config["author"] = json!(args),
            "USER" => cfg["User"] = json!(args),
            "STOPSIGNAL" => cfg["StopSignal"] = json!(args),
            "EXPOSE" => {
                for p in parse::shell_words(&args) {
                    let p = if p.contains('/') {
                        p
                    } else {
                        format!("{p}/tcp")
                    };
                    cfg["ExposedPorts"][p] = json!({});
                }
            }
            "VOLUME" => {
                let vols = ins.json_args().unwrap_or_else(|| parse::shell_words(&args));
                for v in vols {
                    cfg["Volumes"][v] = json!({});
                }
            }
            "CMD" => cfg["Cmd"] = json!(command),
            "ENTRYPOINT" => cfg["Entrypoint"] = json!(command),
            "SHELL" => {
                self.shell = ins.json_args().ok_or_else(|| {
                    BuildError::Parse(
                        "SHELL needs the JSON form, e.g. [\"/bin/sh\", \"-c\"]".into(),
                    )
                })?
            }
            "HEALTHCHECK" => {
                let test = if args.trim().eq_ignore_ascii_case("none") {
                    json!(["NONE"])
                } else {
                    let body = args
                        .split_once("CMD")
                        .map_or(args.as_str(), |(_, b)| b)
                        .trim();
                    match serde_json::from_str::<Vec<String>>(body) {
                        Ok(v) => json!(
                            ["CMD"]
                                .iter()
                                .map(|s| s.to_string())
                                .chain(v)
                                .collect::<Vec<_>>()
                        ),
                        Err(_) => json!(["CMD-SHELL", body]),
                    }
                };
                cfg["Healthcheck"] = json!({ "Test": test });
            }
            "ONBUILD" => {
                let mut v = cfg["OnBuild"].as_array().cloned().unwrap_or_default();
                v.push(json!(ins.args));
                cfg["OnBuild"] = json!(v);
            }
            "WORKDIR" => {
                let cur = cfg["WorkingDir"].as_str().unwrap_or("/").to_string();
                let dir = if args.starts_with('/') {
                    args.clone()
                } else {
                    format!("{}/{args}", cur.trim_end_matches('/'))
                };
                cfg["WorkingDir"] = json!(dir);
                let dir = dir.trim_matches('/').to_string();
                self.layer(ins, |w| w.ensure_dir(&dir)).await?;
            }
            "COPY" | "ADD" => self.copy(ins, &args).await?,
            "RUN" => return self.run(ins, command, output).await,
            other => return Err(BuildError::Parse(format!("unknown instruction: {other}"))),
        }
        self.history(ins, false);
        Ok(())
    }

    /// RUN: the command in a container of the stage so far; what it changed is the layer.
    async fn run(
        &mut self,
        ins: &Instruction,
        command: Vec<String>,
        output: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), BuildError> {
        let runner = self.runner.ok_or_else(|| {
            BuildError::Parse("RUN needs crustd's engine to run a container".into())
        })?;
        let image = self.record()?;
        let set: Vec<&str> = image
            .config
            .env
            .iter()
            .filter_map(|e| e.split('=').next())
            .collect();
        let mut env: Vec<String> = self
            .args
            .iter()
            .filter(|(k, _)| !set.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.sort();
        let done = runner
            .run(RunStep {
                image,
                command,
                env,
                output,
            })
            .await?;
        let (upper, skip) = (done.upper.clone(), done.skip.clone());
        let result = self
            .layer(ins, |w| w.add_overlay_upper(&upper, &skip))
            .await;
        runner.remove(done).await;
        result
    }

    /// The stage so far as an image record a container can be created from (not stored).
    fn record(&self) -> Result<crate::image::ImageRecord, BuildError> {
        let config = match &self.state.config["config"] {
            Value::Null => Value::Object(Default::default()),
            c => c.clone(),
        };
        let config = serde_json::from_value(config)
            .map_err(|e| BuildError::Parse(format!("the stage's config: {e}")))?;
        let diffs: Vec<String> = self
            .state
            .layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect();
        Ok(crate::image::ImageRecord {
            id: format!("sha256:{}", self.state.key()),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 0,
            config,
            chain_ids: chain_ids(&diffs),
            layer_digests: self.state.layers.iter().map(|l| l.digest.clone()).collect(),
            pinned: false,
        })
    }

    fn history(&mut self, ins: &Instruction, layer: bool) {
        let mut h = self.state.config["history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut e = json!({ "created_by": ins.text, "comment": "crust build" });
        if !layer {
            e["empty_layer"] = json!(true);
        }
        h.push(e);
        self.state.config["history"] = json!(h);
    }

    async fn copy(&mut self, ins: &Instruction, args: &str) -> Result<(), BuildError> {
        let words = ins.json_args().unwrap_or_else(|| parse::shell_words(args));
        if words.len() < 2 {
            return Err(BuildError::Parse(format!(
                "{} needs a source and a destination",
                ins.keyword
            )));
        }
        let (srcs, dest) = words.split_at(words.len() - 1);
        let dest = dest[0].clone();
        let workdir = self.state.config["config"]["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_string();
        let dest_abs = if dest.starts_with('/') {
            dest.clone()
        } else {
            format!("{}/{dest}", workdir.trim_end_matches('/'))
        };
        let into_dir = dest.ends_with('/') || srcs.len() > 1;
        let owner = match ins.flag("chown") {
            None => None,
            Some(o) => {
                let (u, g) = o.split_once(':').unwrap_or((o, o));
                match (u.parse(), g.parse()) {
                    (Ok(u), Ok(g)) => Some((u, g)),
                    _ => {
                        return Err(BuildError::Parse(format!(
                            "--chown={o}: only numeric uid:gid is supported"
                        )));
                    }
                }
            }
        };
        // Sources: the context, or another stage's (or image's) layers, top layer first.
        let mut items: Vec<(PathBuf, String, bool)> = Vec::new();
        match ins.flag("from") {
            None => {
                for s in srcs {
                    for rel in self.ctx.sources(s)? {
                        items.push((self.ctx.root.join(&rel), rel, true));
                    }
                }
            }
            Some(from) => {
                let st = self
                    .done
                    .iter()
                    .find(|(n, _)| n.as_deref() == Some(from))
                    .map(|(_, s)| s.clone())
                    .or_else(|| {
                        from.parse::<usize>()
                            .ok()
                            .and_then(|i| self.done.get(i))
                            .map(|(_, s)| s.clone())
                    })
                    .ok_or_else(|| BuildError::Parse(format!("--from={from}: no such stage")))?;
                let diffs: Vec<String> = st.layers.iter().map(|l| l.diff_id.clone()).collect();
                for s in srcs {
                    let rel = s.trim_start_matches('/');
                    let found = chain_ids(&diffs)
                        .iter()
                        .rev()
                        .map(|c| self.store.snapshot_path(c).join(rel))
                        .find(|p| std::fs::symlink_metadata(p).is_ok())
                        .ok_or_else(|| {
                            BuildError::Context(format!("{s}: not found in stage {from}"))
                        })?;
                    items.push((found, String::new(), false));
                }
            }
        }
        let is_add = ins.keyword == "ADD";
        let ctx = self.ctx;
        self.layer(ins, move |w| {
            w.owner = owner;
            for (path, _rel, from_ctx) in &items {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let d = dest_abs.trim_start_matches('/');
                if is_add && path.is_file() && context::is_local_tar(path) {
                    w.add_tar_contents(path, d.trim_end_matches('/'))?;
                    continue;
                }
                let target = if path.is_dir() {
                    d.trim_end_matches('/').to_string()
                } else if into_dir || d.is_empty() {
                    format!("{}/{name}", d.trim_end_matches('/'))
                        .trim_start_matches('/')
                        .to_string()
                } else {
                    d.to_string()
                };
                let c = from_ctx.then_some(ctx);
                let rel = if *from_ctx {
                    _rel.clone()
                } else {
                    String::new()
                };
                w.add_path(c, path, &rel, &target)?;
            }
            Ok(())
        })
        .await
    }

    /// Writes one layer with `fill`, stores and unpacks it, and adds it to the stage.
    async fn layer(
        &mut self,
        ins: &Instruction,
        fill: impl FnOnce(&mut LayerWriter) -> std::io::Result<()>,
    ) -> Result<(), BuildError> {
        let tmp = self
            .store
            .root()
            .join("content/tmp")
            .join(format!("build-{}.tar.gz", rand::random::<u64>()));
        let result = (|| {
            let mut w = LayerWriter::create(&tmp)?;
            fill(&mut w)?;
            w.finish()
        })();
        let diff_id = match result {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(BuildError::Io {
                    context: "write the layer".into(),
                    source: e,
                });
            }
        };
        let bytes_digest = {
            let mut f = std::fs::File::open(&tmp).map_err(io("read the layer"))?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h).map_err(io("read the layer"))?;
            format!("sha256:{}", hex::encode(h.finalize()))
        };
        let size = std::fs::metadata(&tmp).map_or(0, |m| m.len());
        std::fs::rename(&tmp, self.store.blob_path(&bytes_digest))
            .map_err(io("store the layer"))?;
        let mut diffs: Vec<String> = self
            .state
            .layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect();
        diffs.push(diff_id.clone());
        let chain = chain_ids(&diffs).pop().expect("one layer at least");
        let desc = Descriptor {
            media_type: String::new(),
            digest: bytes_digest.clone(),
            size: size as i64,
            platform: None,
            urls: vec![],
        };
        self.store
            .ensure_snapshot(None, &desc, &diff_id, &chain, None)
            .await?;
        self.state.layers.push(Layer {
            digest: bytes_digest,
            diff_id: diff_id.clone(),
            size,
        });
        let mut ids = self.state.config["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ids.push(json!(diff_id));
        self.state.config["rootfs"] = json!({"type": "layers", "diff_ids": ids});
        self.history(ins, true);
        Ok(())
    }
}
