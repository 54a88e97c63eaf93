//! Exec, Attach and PortForward: each checks its request and answers with a single-use URL
//! on crust's streaming server, where the session itself runs.

use crust_proto::cri;
use crust_runtime::Engine;
use crust_runtime::error::{Error, Result};
use crust_runtime::store::{ContainerState, PodState};

use crate::streaming::{Pending, StreamingServer};

fn server(s: Option<&StreamingServer>) -> Result<&StreamingServer> {
    s.ok_or_else(|| Error::Unavailable("the streaming server is not running".into()))
}

/// The container's full id if it is running (or, with `created_too`, created and not yet
/// started: an attach made before the start misses none of the output, as Docker's does).
async fn require_running(e: &Engine, id: &str, created_too: bool) -> Result<String> {
    if id.is_empty() {
        return Err(Error::InvalidArgument("container_id is required".into()));
    }
    let c = e.container(id).await?;
    let created = created_too && c.state == ContainerState::Created;
    if c.state != ContainerState::Running && !created {
        return Err(Error::FailedPrecondition(format!(
            "container {} is {:?}; streaming needs a running container",
            c.id, c.state
        )));
    }
    Ok(c.id)
}

fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<()> {
    if !stdin && !stdout && !stderr {
        return Err(Error::InvalidArgument(
            "one of stdin, stdout and stderr must be set".into(),
        ));
    }
    if tty && stderr {
        return Err(Error::InvalidArgument(
            "tty and stderr cannot both be set: a terminal merges stderr into stdout".into(),
        ));
    }
    Ok(())
}

pub fn exec_id(r: &cri::ExecRequest) -> String {
    r.container_id.clone()
}

pub async fn exec(
    e: &Engine,
    s: Option<&StreamingServer>,
    mut req: cri::ExecRequest,
) -> Result<cri::ExecResponse> {
    if req.cmd.is_empty() || req.cmd[0].is_empty() {
        return Err(Error::InvalidArgument("cmd is required".into()));
    }
    check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
    req.container_id = require_running(e, &req.container_id, false).await?;
    Ok(cri::ExecResponse {
        url: server(s)?.url_for(Pending::Exec(req)),
    })
}

pub fn attach_id(r: &cri::AttachRequest) -> String {
    r.container_id.clone()
}

pub async fn attach(
    e: &Engine,
    s: Option<&StreamingServer>,
    mut req: cri::AttachRequest,
) -> Result<cri::AttachResponse> {
    check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
    req.container_id = require_running(e, &req.container_id, true).await?;
    let c = e.container(&req.container_id).await?;
    if req.stdin && !c.config.stdin {
        return Err(Error::FailedPrecondition(format!(
            "container {} was not created with stdin",
            c.id
        )));
    }
    Ok(cri::AttachResponse {
        url: server(s)?.url_for(Pending::Attach(req)),
    })
}

pub fn port_forward_id(r: &cri::PortForwardRequest) -> String {
    r.pod_sandbox_id.clone()
}

pub async fn port_forward(
    e: &Engine,
    s: Option<&StreamingServer>,
    mut req: cri::PortForwardRequest,
) -> Result<cri::PortForwardResponse> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Error::InvalidArgument("pod_sandbox_id is required".into()));
    }
    if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(Error::InvalidArgument(format!(
            "port {p} is not a TCP port"
        )));
    }
    let pod = e.pod(&req.pod_sandbox_id).await?;
    if pod.state != PodState::Ready {
        return Err(Error::FailedPrecondition(format!(
            "pod sandbox {} is not ready",
            pod.id
        )));
    }
    req.pod_sandbox_id = pod.id;
    Ok(cri::PortForwardResponse {
        url: server(s)?.url_for(Pending::PortForward(req)),
    })
}
