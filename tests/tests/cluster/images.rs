//! Images as kubelet manages them: pull policies, a missing image, pull secrets, and image
//! garbage collection.

use super::*;

/// Waits for `pod`'s container to be in ImagePullBackOff; returns the messages of its
/// events (where kubelet puts the pull's error).
fn pull_backoff_events(c: &Cluster, pod: &str) -> Result<String, String> {
    c.wait_for(
        &format!("pod/{pod}"),
        "{.status.containerStatuses[0].state.waiting.reason}",
        MINUTE,
        |r| r == "ImagePullBackOff",
    )?;
    c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "jsonpath={.items[*].message}",
    ])
}

pub(crate) fn images(c: &Cluster) -> Outcome {
    let busybox = c.image("busybox");
    let zstd = c.image("zstd");
    let missing = format!("{}/does-not-exist:latest", c.registry);
    for (name, image, policy) in [
        ("pull-always", busybox.as_str(), "Always"),
        ("pull-if-not-present", zstd.as_str(), "IfNotPresent"),
        ("pull-missing", missing.as_str(), "IfNotPresent"),
    ] {
        c.apply(&pod_yaml(
            name,
            &format!(
                "containers:\n- name: c\n  image: {image}\n  imagePullPolicy: {policy}\n  command: [sleep, '1000']"
            ),
        ))?;
    }
    c.wait_phase("pull-always", "Running", MINUTE)?;
    c.wait_phase("pull-if-not-present", "Running", MINUTE)?;
    let message = pull_backoff_events(c, "pull-missing")?;
    contains(&message, &["does-not-exist", "ErrImagePull"])
        .or_else(|_| contains(&message, &["does-not-exist", "not found"]))?;
    c.kubectl_ok(&[
        "delete",
        "pod",
        "pull-always",
        "pull-if-not-present",
        "pull-missing",
        "--wait=false",
    ])
    .map(drop)
}

/// A registry that wants Basic auth (`registry` fronts the test registry and refuses
/// anonymous pulls): a pod whose `imagePullSecrets` holds the credentials runs, kubelet passing
/// them in PullImage's auth; one without the secret waits in ImagePullBackOff with the
/// registry's refusal in its events.
pub(crate) fn private_registry(c: &Cluster, registry: &str, user: &str, password: &str) -> Outcome {
    c.kubectl_ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={registry}"),
        &format!("--docker-username={user}"),
        &format!("--docker-password={password}"),
    ])?;
    let image = format!("{registry}/crust-test/busybox:latest");
    let unauthorized = format!("{registry}/crust-test/private-without-secret:latest");
    c.apply(&pod_yaml(
        "private",
        &format!(
            "imagePullSecrets: [{{name: regcred}}]\ncontainers:\n- name: c\n  image: {image}\n  imagePullPolicy: Always\n  command: [sleep, '1000']"
        ),
    ))?;
    c.apply(&pod_yaml(
        "private-without-secret",
        &format!("containers:\n- name: c\n  image: {unauthorized}\n  command: [sleep, '1000']"),
    ))?;
    c.wait_phase("private", "Running", MINUTE)?;
    let events = pull_backoff_events(c, "private-without-secret")?;
    contains(&events, &["private-without-secret"])?;
    if !["nauthorized", "nauthenticated", "401", "credentials"]
        .iter()
        .any(|w| events.contains(w))
    {
        return Err(format!("no word of the refusal in: {events}"));
    }
    c.kubectl_ok(&[
        "delete",
        "pod",
        "private",
        "private-without-secret",
        "--wait=false",
    ])?;
    c.kubectl_ok(&["delete", "secret", "regcred"]).map(drop)
}

/// The node's images as `NAME ID` lines, from crustd itself.
fn node_images(c: &Cluster) -> Result<String, String> {
    c.crustctl(&[
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ])
}

/// The id crustd gives the image `name`, if it has it.
fn node_image_id(c: &Cluster, name: &str) -> Result<Option<String>, String> {
    Ok(node_images(c)?.lines().find_map(|l| {
        let (n, id) = l.split_once(' ')?;
        (n == name).then(|| id.to_string())
    }))
}

/// kubelet's image garbage collection, in three steps spread over the run because kubelet
/// collects every five minutes and only images it has known for `imageMinimumGCAge` (2 min):
/// [`image_gc_victim`] runs a pod of an image nothing else uses and deletes it;
/// [`image_gc_arm`] waits for kubelet to remove the pod's container (an exited container still
/// counts as a use), lowers the threshold to 1 % (any use passes it) and restarts kubelet, which
/// lists the images as it starts; [`image_gc_removed`], later, waits for the collection five
/// minutes after that start to remove the image through crust (ListImages, ImageFsInfo,
/// RemoveImage) while the images running pods use stay.
pub(crate) struct ImageGc {
    unused: String,
    unused_id: String,
    log_mark: usize,
    armed: Instant,
}

/// Containers of image `id` (running or not), as crustd lists them.
fn containers_of(c: &Cluster, id: &str) -> Result<String, String> {
    c.crustctl(&["ps", "-a", "-q", "--filter", &format!("ancestor={id}")])
}

/// [`ImageGc`]'s first step: the image's id.
pub(crate) fn image_gc_victim(c: &Cluster) -> Result<String, String> {
    let unused = c.image("stopsig");
    c.apply(&pod_yaml(
        "gc-victim",
        &format!("containers:\n- name: c\n  image: {unused}\n  command: [sleep, '1000']"),
    ))?;
    c.wait_phase("gc-victim", "Running", MINUTE)?;
    let id = node_image_id(c, &unused)?.ok_or(format!("{unused} not on the node"))?;
    if containers_of(c, &id)?.trim().is_empty() {
        return Err(format!("crustctl ps finds no container of {id}"));
    }
    c.kubectl_ok(&[
        "delete",
        "pod",
        "gc-victim",
        "--grace-period=1",
        "--wait=true",
        "--timeout=60s",
    ])?;
    Ok(id)
}

/// [`ImageGc`]'s second step.
pub(crate) fn image_gc_arm(c: &Cluster, unused_id: &str) -> Result<ImageGc, String> {
    let unused = c.image("stopsig");
    // kubelet's container garbage collection runs every minute.
    c.wait(
        "kubelet removing gc-victim's container",
        2 * MINUTE,
        || match containers_of(c, unused_id)? {
            ids if ids.trim().is_empty() => Ok(()),
            ids => Err(format!("containers of {unused}: {ids}")),
        },
    )?;
    c.set_kubelet_config(&[
        ("imageGCHighThresholdPercent", "1"),
        ("imageGCLowThresholdPercent", "0"),
    ])?;
    // kubelet notes when it first sees each image at its start, and collects only images seen
    // at least 2 minutes before a collection (every 5 minutes). That first look lists every
    // container and asks each one's status; a container its own container GC (which starts at
    // the same moment) removes in between answers NotFound and fails the whole look, so the
    // images are first seen at the first collection and are too young for it. A kubelet race,
    // whatever the runtime: restart it again when its log says so.
    for attempt in 1..=3 {
        let log_mark = c.kubelet_log().len();
        c.restart("kubelet", "TERM")?;
        let armed = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        c.wait("node Ready after kubelet's restart", MINUTE, || {
            node_ready(c)
        })?;
        let log = c.kubelet_log();
        let failed = log
            .get(log_mark..)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("Failed to monitor images"))
            .map(str::to_string);
        match failed {
            Some(l) if attempt < 3 => eprintln!("kubelet's first look at images failed: {l}"),
            Some(l) => {
                return Err(format!(
                    "kubelet's first look at images failed 3 times: {l}"
                ));
            }
            None => {
                return Ok(ImageGc {
                    unused,
                    unused_id: unused_id.to_string(),
                    log_mark,
                    armed,
                });
            }
        }
    }
    unreachable!("the third attempt returns")
}

/// [`ImageGc`]'s last step.
pub(crate) fn image_gc_removed(c: &Cluster, gc: &ImageGc) -> Outcome {
    let in_use = c.image("busybox");
    // Five minutes after kubelet's start, and a minute's slack.
    let limit = (gc.armed + 6 * MINUTE).saturating_duration_since(Instant::now());
    c.wait(
        "kubelet's image garbage collection",
        limit.max(MINUTE),
        || {
            let log = c.kubelet_log();
            let log = log.get(gc.log_mark..).unwrap_or_default();
            let removed = log
                .lines()
                .find(|l| l.contains("Removing image to free bytes") && l.contains(&gc.unused_id));
            match removed {
                Some(_) if node_image_id(c, &gc.unused)?.is_none() => Ok(()),
                Some(l) => Err(format!("kubelet removed it ({l}), crustd still lists it")),
                None => {
                    // What kubelet's collections said, to tell why.
                    let said: Vec<&str> = log
                        .lines()
                        .filter(|l| {
                            l.contains("image_gc_manager") || l.contains("Image garbage collection")
                        })
                        .collect();
                    Err(format!(
                        "no removal of {} in kubelet's log; its collections since the restart:\n{}",
                        gc.unused_id,
                        said.join("\n")
                    ))
                }
            }
        },
    )?;
    // What running pods use stays.
    node_image_id(c, &in_use)?.ok_or(format!("kubelet removed {in_use}, which pods use"))?;
    let metrics = c.kubectl_ok(&["get", "--raw", "/api/v1/nodes/crust-node/proxy/metrics"])?;
    contains(
        &metrics,
        &["kubelet_image_garbage_collected_total{reason=\"space\"}"],
    )
}
