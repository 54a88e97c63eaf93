//! Building images from Dockerfiles. `parse` reads the Dockerfile, `context` resolves the
//! files COPY/ADD read and writes layer tars, `steps` applies each instruction to the image
//! config; this module drives the stages, the build cache and the final commit.
//!
//! Every filesystem change becomes a gzip layer in the content store, unpacked into a
//! snapshot like a pulled layer, so CRI sees the image as soon as it is recorded. The record
//! is written last: a failing build leaves no image behind (its blobs go at the next GC).
//! The cache maps (parent state, instruction, content of the files a COPY reads) to the
//! resulting config and layers, in `build-cache/` under the image root.

pub mod context;
pub mod parse;
mod steps;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::image::oci::{Descriptor, Manifest};
use crate::image::{Credentials, ImageError, ImageRecord, ImageStore, Reference, chain_ids};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("Dockerfile: {0}")]
    Parse(String),
    #[error("build context: {0}")]
    Context(String),
    #[error("step {step}/{steps} `{instruction}`: {reason}")]
    Step {
        step: usize,
        steps: usize,
        instruction: String,
        reason: String,
    },
    /// A RUN step's container could not run, or its command failed.
    #[error("{0}")]
    Run(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub context_dir: PathBuf,
    /// Relative to the context, or absolute.
    pub dockerfile: PathBuf,
    pub tags: Vec<String>,
    pub build_args: HashMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
}

/// A progress report: a step starts, is served from the cache, or ends.
#[derive(Debug, Clone, Default)]
pub struct BuildEvent {
    pub step: usize,
    pub steps: usize,
    pub instruction: String,
    /// start, cached, done.
    pub status: &'static str,
    pub message: String,
}

/// A RUN step for a [`StepRunner`]: the command, in a container of the stage's image so far.
pub struct RunStep<'a> {
    /// The stage's image so far (not in the store: its id is its config's digest).
    pub image: crate::image::ImageRecord,
    pub command: Vec<String>,
    /// Build args in scope, as environment variables the image's ENV does not set.
    pub env: Vec<String>,
    /// Called with each line the command prints.
    pub output: &'a (dyn Fn(String) + Send + Sync),
}

/// A RUN step's container after it exited 0: its overlay's upper directory holds what the
/// command changed.
pub struct RunDone {
    pub upper: PathBuf,
    /// What the runtime made in the upper directory, not the command (mount points for
    /// /etc/hosts and the like the image lacks): left out of the layer, as Docker does.
    pub skip: Vec<String>,
    pub pod_id: String,
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What runs RUN steps: the engine, which has pods, containers and the monitor.
pub trait StepRunner: Send + Sync {
    fn run<'a>(&'a self, step: RunStep<'a>) -> BoxFuture<'a, Result<RunDone, BuildError>>;
    /// Removes the step's container and pod, once its layer is written.
    fn remove<'a>(&'a self, done: RunDone) -> BoxFuture<'a, ()>;
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Layer {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
}

/// A stage's image so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub config: serde_json::Value,
    pub layers: Vec<Layer>,
}

impl State {
    fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.config.to_string());
        for l in &self.layers {
            h.update(&l.digest);
        }
        hex::encode(h.finalize())
    }
}

impl ImageStore {
    /// Builds the Dockerfile of `opts`; returns the image's record (tagged with every tag).
    pub async fn build(
        &self,
        opts: &BuildOptions,
        runner: Option<&dyn StepRunner>,
        progress: &(dyn Fn(BuildEvent) + Send + Sync),
    ) -> Result<ImageRecord, BuildError> {
        let ctx = context::Context::open(&opts.context_dir)?;
        let df = ctx.root.join(&opts.dockerfile);
        let text = std::fs::read_to_string(&df)
            .map_err(|e| BuildError::Context(format!("{}: {e}", df.display())))?;
        let all = parse::parse(&text)?;
        let first_from = all
            .iter()
            .position(|i| i.keyword == "FROM")
            .ok_or_else(|| BuildError::Parse("no FROM instruction".into()))?;
        // ARGs before the first FROM are usable in FROM lines.
        let mut global = HashMap::new();
        for i in &all[..first_from] {
            if i.keyword != "ARG" {
                return Err(BuildError::Parse(format!(
                    "line {}: {} before the first FROM",
                    i.line, i.keyword
                )));
            }
            let (k, v) = i.args.split_once('=').unwrap_or((&i.args, ""));
            let v = opts
                .build_args
                .get(k)
                .cloned()
                .unwrap_or_else(|| v.to_string());
            global.insert(k.trim().to_string(), v);
        }
        let mut stages: Vec<Vec<parse::Instruction>> = Vec::new();
        for i in &all[first_from..] {
            if i.keyword == "FROM" {
                stages.push(Vec::new());
            }
            stages
                .last_mut()
                .expect("a FROM came first")
                .push(i.clone());
        }
        let names: Vec<Option<String>> = stages
            .iter()
            .map(|s| {
                let w = parse::shell_words(&s[0].args);
                (w.len() == 3 && w[1].eq_ignore_ascii_case("as")).then(|| w[2].clone())
            })
            .collect();
        let last = match &opts.target {
            None => stages.len() - 1,
            Some(t) => names
                .iter()
                .position(|n| n.as_deref() == Some(t.as_str()))
                .or_else(|| t.parse::<usize>().ok().filter(|i| *i < stages.len()))
                .ok_or_else(|| BuildError::Parse(format!("target stage {t:?} not found")))?,
        };
        let steps = stages[..=last].iter().map(Vec::len).sum::<usize>() + first_from;
        // The ARGs before the first FROM are steps too, as Docker numbers and prints them;
        // they only set values (above), so there is nothing to run or cache.
        for (i, ins) in all[..first_from].iter().enumerate() {
            for status in ["start", "done"] {
                progress(BuildEvent {
                    step: i + 1,
                    steps,
                    instruction: ins.text.clone(),
                    status,
                    message: String::new(),
                });
            }
        }
        let mut step = first_from;
        let mut done: Vec<(Option<String>, State)> = Vec::new();
        for (si, stage) in stages[..=last].iter().enumerate() {
            let mut st = steps::StageRun::new(self, &ctx, opts, &global, &done, runner);
            for ins in stage {
                step += 1;
                let ev = |status, message: String| BuildEvent {
                    step,
                    steps,
                    instruction: ins.text.clone(),
                    status,
                    message,
                };
                let fail = |e: BuildError| match e {
                    BuildError::Step { .. } => e,
                    other => BuildError::Step {
                        step,
                        steps,
                        instruction: ins.text.clone(),
                        reason: other.to_string(),
                    },
                };
                if ins.keyword == "FROM" {
                    progress(ev("start", String::new()));
                    st.from(ins).await.map_err(fail)?;
                    progress(ev("done", String::new()));
                    continue;
                }
                let key = st.cache_key(ins).map_err(fail)?;
                if !opts.no_cache
                    && let Some(cached) = self.cache_get(&key)
                {
                    st.state = cached;
                    st.replay_vars(ins);
                    progress(ev("cached", String::new()));
                    continue;
                }
                progress(ev("start", String::new()));
                let output = |line: String| progress(ev("output", line));
                st.apply(ins, &output).await.map_err(fail)?;
                self.cache_put(&key, &st.state);
                progress(ev("done", String::new()));
            }
            done.push((names[si].clone(), st.state));
        }
        let state = done.pop().expect("one stage at least").1;
        self.commit_build(state, &opts.tags)
    }

    fn cache_dir(&self) -> PathBuf {
        self.root().join("build-cache")
    }

    /// A cached state whose layers are all still in the store.
    fn cache_get(&self, key: &str) -> Option<State> {
        let p = self.cache_dir().join(format!("{key}.json"));
        let st: State = crate::fsutil::read_json(&p).ok().flatten()?;
        let diff_ids: Vec<String> = st.layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        let present = st
            .layers
            .iter()
            .all(|l| self.blob_path(&l.digest).is_file())
            && chains.iter().all(|c| self.snapshot_path(c).is_dir());
        present.then_some(st)
    }

    fn cache_put(&self, key: &str, st: &State) {
        let dir = self.cache_dir();
        let _ = crate::fsutil::ensure_private_dir(&dir);
        if let Err(e) = crate::fsutil::write_json_atomic(&dir.join(format!("{key}.json")), st) {
            tracing::warn!(err = %e, "build cache write failed");
        }
    }

    fn commit_build(&self, st: State, tags: &[String]) -> Result<ImageRecord, BuildError> {
        let bytes = serde_json::to_vec(&st.config)
            .map_err(|e| BuildError::Parse(format!("encode config: {e}")))?;
        let digest = crate::image::registry::sha256_digest(&bytes);
        self.store_blob_bytes(&digest, &bytes)?;
        let manifest = Manifest {
            media_type: crate::image::registry::MEDIA_OCI_MANIFEST.into(),
            config: Descriptor {
                media_type: "application/vnd.oci.image.config.v1+json".into(),
                digest: digest.clone(),
                size: bytes.len() as i64,
                platform: None,
                urls: vec![],
            },
            layers: st
                .layers
                .iter()
                .map(|l| Descriptor {
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    digest: l.digest.clone(),
                    size: l.size as i64,
                    platform: None,
                    urls: vec![],
                })
                .collect(),
        };
        let first = tags
            .first()
            .cloned()
            .unwrap_or_else(|| format!("crust-build/{}", &digest[7..19]));
        let reference = Reference::parse(&first).map_err(ImageError::from)?;
        let (config, diff_ids) = crate::image::parse_config(&bytes, &manifest, &reference)?;
        let rec = self.commit_record(&reference, None, &manifest, &config, chain_ids(&diff_ids))?;
        let mut rec = rec;
        for t in tags.iter().skip(1) {
            let r = Reference::parse(t).map_err(ImageError::from)?;
            if let Some(tag) = r.tagged() {
                rec = self.add_tag(&rec.id, &tag)?;
            }
        }
        Ok(rec)
    }
}

/// Credentials for FROM pulls (crustd's credentials file applies when they are empty).
fn no_creds() -> Credentials {
    Credentials::default()
}
