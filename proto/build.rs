//! Generates the CRI v1 bindings from `api.proto` of the `k8s.io/cri-api` Go module pinned in
//! `cri-api/go.mod` (and checked against `cri-api/go.sum`): the Go toolchain fetches the
//! module through its proxy into the module cache, and nothing of it is kept in this
//! repository. `CRUST_CRI_API_DIR` may name an unpacked cri-api module instead (no Go then).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let pin = manifest.join("cri-api");
    println!("cargo:rerun-if-changed=cri-api/go.mod");
    println!("cargo:rerun-if-changed=cri-api/go.sum");
    println!("cargo:rerun-if-env-changed=CRUST_CRI_API_DIR");
    println!("cargo:rerun-if-env-changed=GO");
    println!("cargo:rerun-if-env-changed=PROTOC");

    let (module, version) = match std::env::var_os("CRUST_CRI_API_DIR") {
        Some(dir) => (PathBuf::from(dir), "unknown".to_string()),
        None => download(&pin)?,
    };
    println!("cargo:rustc-env=CRUST_CRI_API_VERSION={version}");
    let source = module.join("pkg/apis/runtime/v1/api.proto");
    let text =
        std::fs::read_to_string(&source).map_err(|e| format!("read {}: {e}", source.display()))?;
    // protoc before 22 (Debian 12 ships 3.21) does not know `debug_redact`; prost ignores it
    // anyway, and AuthConfig's Debug is written by hand (src/lib.rs) to redact the same fields.
    let text = text.replace(" [debug_redact = true]", "");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("cri");
    std::fs::create_dir_all(&out)?;
    let proto = out.join("api.proto");
    std::fs::write(&proto, text)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        // crust keeps CRI configs in its pod and container records (JSON); fields a newer
        // CRI adds are absent from older records and take their defaults.
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".", "#[serde(default)]")
        .skip_debug([".runtime.v1.AuthConfig"])
        .compile_protos(&[proto.as_path()], &[out.as_path()])?;

    // crust's own API (build, tag, push, rename): a file of this repository.
    println!("cargo:rerun-if-changed=crust/v1/images.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .skip_debug([".crust.v1.AuthConfig"])
        .compile_protos(&[manifest.join("crust/v1/images.proto")], &[manifest])?;
    Ok(())
}

/// The module's directory in the Go module cache, downloaded (and verified) if needed, and
/// its version.
fn download(pin: &Path) -> Result<(PathBuf, String), Box<dyn std::error::Error>> {
    // Debian's golang-go (1.19) may come first on PATH; the machine's own Go is preferred.
    let go = std::env::var("GO").unwrap_or_else(|_| {
        let local = "/usr/local/go/bin/go";
        if Path::new(local).exists() {
            local.into()
        } else {
            "go".into()
        }
    });
    let output = Command::new(&go)
        .args(["mod", "download", "-json", "k8s.io/cri-api"])
        .current_dir(pin)
        .env("GOFLAGS", "-mod=readonly")
        .output()
        .map_err(|e| {
            format!(
                "run `{go} mod download` for the CRI bindings: {e} (install Go, or set \
                 CRUST_CRI_API_DIR to an unpacked k8s.io/cri-api module)"
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "`{go} mod download -json k8s.io/cri-api` in {} failed: {}{}",
            pin.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let dir = info["Dir"]
        .as_str()
        .ok_or("`go mod download -json` named no module directory")?;
    let version = info["Version"].as_str().unwrap_or("unknown").to_string();
    Ok((PathBuf::from(dir), version))
}
